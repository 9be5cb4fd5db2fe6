//! One order, one trace: an in-process OTLP collector receives the spans of
//! a real order's life across the order service, its relay, the processor,
//! the payment simulator, the processor's relay and the status consumer.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use ordo_proto::OrderServiceClient;
use ordo_proto::order::v1::{GetOrderRequest, OrderLine, OrderStatus, PlaceOrderRequest};
use ordo_telemetry::{LogFormat, Telemetry, TelemetryConfig};
use ordo_testkit::{TestDatabase, TestStream};
use tokio_stream::wrappers::TcpListenerStream;

use crate::helpers::TestProcessor;

/// Spans received, as OTLP sent them.
#[derive(Debug, Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

async fn start_collector() -> (Collector, SocketAddr) {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    (collector, addr)
}

fn telemetry_to(addr: SocketAddr) -> Telemetry {
    ordo_telemetry::init(&TelemetryConfig {
        log_format: LogFormat::Text,
        otlp_endpoint: Some(format!("http://{addr}")),
        ..TelemetryConfig::new("ordo-test", "warn")
    })
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(text) => Some(text.clone()),
            Value::IntValue(n) => Some(n.to_string()),
            _ => None,
        })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Waits until a span named `name` (of `kind`, if given) arrived; returns it.
async fn span_named(
    collector: &Collector,
    telemetry: &Telemetry,
    name: &str,
    kind: Option<i32>,
) -> Span {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        telemetry.flush();
        if let Some(span) = collector
            .spans
            .lock()
            .unwrap()
            .iter()
            .find(|span| span.name == name && kind.is_none_or(|kind| span.kind == kind))
        {
            return span.clone();
        }
        let names: Vec<String> = collector
            .spans
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.name.clone())
            .collect();
        assert!(
            tokio::time::Instant::now() < deadline,
            "no span {name}; got {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const SERVER: i32 = 2;
const CLIENT: i32 = 3;

fn place_request() -> tonic::Request<PlaceOrderRequest> {
    let mut request = tonic::Request::new(PlaceOrderRequest {
        customer_id: "c-trace".into(),
        lines: vec![OrderLine {
            sku: "BOOK".into(),
            quantity: 1,
            unit_price_minor: 4599,
        }],
        currency: "EUR".into(),
        idempotency_key: String::new(),
    });
    request
        .metadata_mut()
        .insert("x-correlation-id", "corr-trace-1".parse().unwrap());
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_order_is_one_trace_from_place_order_to_its_status() {
    let (collector, addr) = start_collector().await;
    let telemetry = telemetry_to(addr);

    let stream = TestStream::new().await;
    let stream_settings =
        ordo_outbox::StreamSettings::isolated(&stream.name, &stream.subject_prefix);
    let processor = TestProcessor::spawn_on(
        TestStream {
            name: stream.name.clone(),
            subject_prefix: stream.subject_prefix.clone(),
        },
        stream_settings.clone(),
        |settings| settings,
    )
    .await;
    let orders_db = TestDatabase::create().await.unwrap();
    let defaults = order_service::Settings::default();
    let app = order_service::Application::build(order_service::Settings {
        database_url: orders_db.url().to_owned(),
        grpc_listen_addr: "127.0.0.1:0".parse().unwrap(),
        metrics_listen_addr: None,
        relay: ordo_outbox::RelayConfig {
            nats_url: processor.nats_url.clone(),
            stream: stream_settings.clone(),
            ..defaults.relay.clone()
        },
        ..defaults
    })
    .await
    .unwrap();
    let order_addr = app.local_addr();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let mut client = OrderServiceClient::connect(format!("http://{order_addr}"))
        .await
        .unwrap();

    let order = client
        .place_order(place_request())
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    ordo_testkit::eventually("the order confirmed", Duration::from_secs(30), || {
        let mut client = client.clone();
        let order_id = order.order_id.clone();
        async move {
            client
                .get_order(GetOrderRequest { order_id })
                .await
                .unwrap()
                .into_inner()
                .order
                .unwrap()
                .status()
                == OrderStatus::Confirmed
        }
    })
    .await;

    let prefix = &stream_settings.subject_prefix;
    let place = span_named(
        &collector,
        &telemetry,
        "ordo.order.v1.OrderService/PlaceOrder",
        Some(SERVER),
    )
    .await;
    let handle_place = span_named(&collector, &telemetry, "handle PlaceOrder", None).await;
    let publish_placed = span_named(
        &collector,
        &telemetry,
        &format!("publish {prefix}orders.placed"),
        None,
    )
    .await;
    let processor_handle = span_named(
        &collector,
        &telemetry,
        &format!("handle {prefix}orders.placed"),
        None,
    )
    .await;
    let authorize_client = span_named(
        &collector,
        &telemetry,
        "ordo.payments.v1.PaymentService/Authorize",
        Some(CLIENT),
    )
    .await;
    let authorize_server = span_named(
        &collector,
        &telemetry,
        "ordo.payments.v1.PaymentService/Authorize",
        Some(SERVER),
    )
    .await;
    let publish_confirmed = span_named(
        &collector,
        &telemetry,
        &format!("publish {prefix}orders.confirmed"),
        None,
    )
    .await;
    let status_apply = span_named(
        &collector,
        &telemetry,
        &format!("apply {prefix}orders.confirmed"),
        None,
    )
    .await;

    let chain = [
        ("PlaceOrder", &place),
        ("handle PlaceOrder", &handle_place),
        ("publish placed", &publish_placed),
        ("processor handle", &processor_handle),
        ("Authorize client", &authorize_client),
        ("Authorize server", &authorize_server),
        ("publish confirmed", &publish_confirmed),
        ("status apply", &status_apply),
    ];
    for (what, span) in chain {
        assert_eq!(
            hex(&span.trace_id),
            hex(&place.trace_id),
            "{what} is in the order's trace"
        );
        assert_eq!(
            attribute(span, "correlation_id").as_deref(),
            Some("corr-trace-1"),
            "{what} carries the correlation id"
        );
    }
    let parent_of = |child: &Span, parent: &Span, what: &str| {
        assert_eq!(hex(&child.parent_span_id), hex(&parent.span_id), "{what}");
    };
    parent_of(
        &handle_place,
        &place,
        "the handler runs in the request's span",
    );
    parent_of(
        &publish_placed,
        &handle_place,
        "the relay's publish continues the writing span",
    );
    parent_of(
        &processor_handle,
        &publish_placed,
        "the processor continues the publish",
    );
    parent_of(
        &authorize_client,
        &processor_handle,
        "the payment call is the handling's child",
    );
    parent_of(
        &authorize_server,
        &authorize_client,
        "the simulator continues the call",
    );
    parent_of(
        &publish_confirmed,
        &processor_handle,
        "the processor's outbox publish is the handling's child",
    );
    parent_of(
        &status_apply,
        &publish_confirmed,
        "the status update continues the verdict's publish",
    );
    assert!(
        attribute(&publish_placed, "outbox.wait_ms").is_some(),
        "the publish says how long the row waited"
    );
    telemetry.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_written_before_the_relay_starts_continues_its_original_trace() {
    let (collector, addr) = start_collector().await;
    let telemetry = telemetry_to(addr);
    let stream = TestStream::new().await;
    let stream_settings =
        ordo_outbox::StreamSettings::isolated(&stream.name, &stream.subject_prefix);
    let orders_db = TestDatabase::create().await.unwrap();
    let defaults = order_service::Settings::default();
    let relay_config = ordo_outbox::RelayConfig {
        database_url: orders_db.url().to_owned(),
        nats_url: ordo_testkit::nats::shared_nats_url(),
        stream: stream_settings.clone(),
        ..defaults.relay.clone()
    };
    let app = order_service::Application::build(order_service::Settings {
        database_url: orders_db.url().to_owned(),
        grpc_listen_addr: "127.0.0.1:0".parse().unwrap(),
        metrics_listen_addr: None,
        outbox_relay: false,
        status_consumer: false,
        relay: relay_config.clone(),
        ..defaults
    })
    .await
    .unwrap();
    let order_addr = app.local_addr();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let mut client = OrderServiceClient::connect(format!("http://{order_addr}"))
        .await
        .unwrap();
    client.place_order(place_request()).await.unwrap();
    let handle_place = span_named(&collector, &telemetry, "handle PlaceOrder", None).await;

    // Only now does a relay start, as after a restart.
    let relay = ordo_outbox::RelayHandle::start(relay_config).await.unwrap();
    let publish = span_named(
        &collector,
        &telemetry,
        &format!("publish {}orders.placed", stream_settings.subject_prefix),
        None,
    )
    .await;
    assert_eq!(hex(&publish.trace_id), hex(&handle_place.trace_id));
    assert_eq!(hex(&publish.parent_span_id), hex(&handle_place.span_id));
    let messages = stream
        .messages(&ordo_testkit::nats::shared_nats_url())
        .await
        .unwrap();
    let traceparent = messages[0].header("traceparent").unwrap();
    assert!(
        traceparent.contains(&hex(&publish.span_id)),
        "the message carries the publish span: {traceparent}"
    );
    relay.shutdown(Duration::from_secs(5)).await.unwrap();
    telemetry.shutdown();
}
