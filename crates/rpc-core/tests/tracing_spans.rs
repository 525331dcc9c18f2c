//! Every call and every handled request runs in a span that names the peer,
//! the function and the request id.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use rpc_core::{MemNetwork, Rpc};
use tracing::Subscriber;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

type Spans = Arc<Mutex<Vec<(String, BTreeMap<String, String>)>>>;

/// Records every span's name and fields, including fields recorded later.
#[derive(Clone, Default)]
struct Capture {
    spans: Spans,
    ids: Arc<Mutex<BTreeMap<u64, usize>>>,
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.to_string());
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let mut spans = self.spans.lock().unwrap();
        self.ids.lock().unwrap().insert(id.into_u64(), spans.len());
        spans.push((attrs.metadata().name().to_owned(), fields));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        if let Some(&i) = self.ids.lock().unwrap().get(&id.into_u64()) {
            values.record(&mut Fields(&mut self.spans.lock().unwrap()[i].1));
        }
    }
}

#[test]
fn calls_and_handlers_have_spans_with_peer_function_and_request_id() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    let _guard = tracing::subscriber::set_default(subscriber);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let net = MemNetwork::new();
        let server = Rpc::new();
        server.set_name("server").unwrap();
        server.add_transport(net.transport());
        server.define("hello", |(): ()| async { Ok("hi") }).unwrap();
        server.listen("mem://server").await.unwrap();
        let client = Rpc::new();
        client.set_name("client").unwrap();
        client.add_transport(net.transport());
        client.connect("mem://server").unwrap();
        let hi: String = client.call("server", "hello", &()).await.unwrap();
        assert_eq!(hi, "hi");
    });
    let spans = capture.spans.lock().unwrap();
    let find = |name: &str| {
        spans
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, f)| f.clone())
            .unwrap_or_else(|| panic!("no {name} span among {spans:?}"))
    };
    let call = find("rpc.call");
    let handle = find("rpc.handle");
    assert_eq!(call["peer"], "server");
    assert_eq!(call["function"], "hello");
    assert_eq!(handle["peer"], "client");
    assert_eq!(handle["function"], "hello");
    assert_eq!(
        call["request_id"], handle["request_id"],
        "both sides name the same request"
    );
}
