//! Orders as the business sees them: values parsed once into types that
//! cannot hold an invalid state. Knows neither tonic nor SeaORM.

mod ids;
mod list;
mod new_order;
mod order;
mod violation;

pub use ids::{CorrelationId, IdempotencyKey, OrderId};
pub use list::{ListQuery, PageCursor, PageSize};
pub use new_order::{CancelReason, Currency, CustomerId, LineDraft, NewOrder, NewOrderDraft, Sku};
pub use order::{Order, OrderLine, OrderStatus};
pub use violation::{FieldViolation, Violations};

/// The order's status machine (ordo-lifecycle).
pub use ordo_lifecycle::order as lifecycle;
