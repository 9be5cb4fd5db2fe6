//! Log lines on stderr, as the settings say (`RUST_LOG`, `LOG_FORMAT`).

use crate::settings::Settings;

/// Installs the global subscriber; a second call is a no-op.
pub fn init(settings: &Settings) {
    ordo_service_kit::logging::init(settings.log_format, &settings.log_filter);
}
