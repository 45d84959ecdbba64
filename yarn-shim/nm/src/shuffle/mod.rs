//! MapReduce's `mapreduce_shuffle` auxiliary service: an HTTP server that
//! hands each reducer its partition of every map task's output, speaking
//! the protocol of Hadoop 3.2's ShuffleHandler so MapReduce's own Fetcher
//! works unchanged.
//!
//! - Registration: when a container's launch context carries
//!   `service_data["mapreduce_shuffle"]` (the job token, see [`writable`]),
//!   the application is registered with its user and token password; the
//!   port goes back in `services_meta_data` ([`meta_data`]).
//! - Requests ([`request`]) are checked in ShuffleHandler's order: method,
//!   version headers, parameters (400), job known and URL hash right (401);
//!   then each map id must be a map attempt of that job (404) and its index
//!   readable (500). Every refusal is logged with its reason.
//! - A reply is, per map, a ShuffleHeader then the segment of
//!   `usercache/<user>/appcache/<app>/output/<map>/file.out` that
//!   `file.out.index` ([`index`]) names for the reduce.
//!
//! Invariants: no byte is sent for a request whose hash did not verify with
//! the job's own token; only files under that job's app dir are opened;
//! request sizes are bounded before anything is parsed.

pub mod index;
pub mod request;
pub mod writable;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tracing::{debug, info, warn};
use weir_yarn_api::ids::ApplicationId;

use crate::body::{Segment, Source};
use crate::error::NmError;
use crate::layout::Layout;
use request::{Refusal, HEADER_NAME, HEADER_REPLY_HASH, HEADER_URL_HASH, HEADER_VERSION};
use writable::JobToken;

/// The service's name in yarn.nodemanager.aux-services and in
/// `service_data` / `services_meta_data`.
pub const SERVICE_NAME: &str = "mapreduce_shuffle";

/// `ShuffleHandler.serializeMetaData`: the port as a 4-byte big-endian int.
pub fn meta_data(port: u16) -> Vec<u8> {
    i32::from(port).to_be_bytes().to_vec()
}

struct Job {
    user: String,
    secret: Vec<u8>,
}

struct Shared {
    layout: Layout,
    /// The port Fetchers sign into their URL hash (our own).
    port: u16,
    jobs: Mutex<HashMap<ApplicationId, Job>>,
}

pub struct ShuffleService {
    shared: Arc<Shared>,
    address: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl ShuffleService {
    /// Listens on `bind` (port 0 takes a free one).
    pub async fn start(bind: SocketAddr, layout: Layout) -> Result<ShuffleService, NmError> {
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .map_err(|source| NmError::Listen { address: bind.to_string(), source })?;
        let address = listener.local_addr().map_err(|source| NmError::Listen { address: bind.to_string(), source })?;
        let shared = Arc::new(Shared { layout, port: address.port(), jobs: Mutex::new(HashMap::new()) });
        let app = axum::Router::new().fallback(serve).with_state(shared.clone());
        // weir-net's server gives each request its ConnectInfo<SocketAddr>.
        let limits = weir_net::http::HttpLimits::default();
        let listener = weir_net::AdmittingListener::new(listener, limits.connections, "mapreduce_shuffle");
        let task = tokio::spawn(async move {
            if let Err(e) = weir_net::http::serve(listener, app, limits, std::future::pending()).await {
                warn!(error = %e, "the shuffle server stopped");
            }
        });
        info!(%address, "mapreduce_shuffle listening");
        Ok(ShuffleService { shared, address, task })
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `ShuffleHandler.initializeApplication`: remembers the job's user and
    /// token. A later container of the same application replaces them.
    pub fn register(&self, app: ApplicationId, user: &str, service_data: &[u8]) -> Result<(), NmError> {
        let token = JobToken::from_service_data(service_data)?;
        crate::layout::user(user)?;
        let expected = format!("job_{}_{:04}", app.cluster_timestamp, app.id);
        if token.job_id != expected {
            // Hadoop keys the token by the application, not by what the
            // token says; note the difference, it points at a confused AM.
            warn!(application_id = %app, token_job = %token.job_id, "the job token names another job");
        }
        let mut jobs = self.shared.jobs.lock().unwrap_or_else(|p| p.into_inner());
        if jobs.insert(app, Job { user: user.to_owned(), secret: token.password }).is_none() {
            info!(application_id = %app, user, "shuffle registered the job");
        }
        Ok(())
    }

    /// `ShuffleHandler.stopApplication`.
    pub fn unregister(&self, app: ApplicationId) {
        let mut jobs = self.shared.jobs.lock().unwrap_or_else(|p| p.into_inner());
        if jobs.remove(&app).is_some() {
            info!(application_id = %app, "shuffle forgot the job");
        }
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for ShuffleService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// ShuffleHandler.sendError: text body, version headers, connection closed.
fn error_response(refusal: Refusal) -> Response {
    let status = StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, refusal.message).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=UTF-8"));
    h.insert(HEADER_NAME, HeaderValue::from_static(request::DEFAULT_NAME));
    h.insert(HEADER_VERSION, HeaderValue::from_static(request::DEFAULT_VERSION));
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

async fn serve(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    // The body is never read (a GET has none) and is not Sync: keep only
    // the head across awaits.
    let (req, _) = req.into_parts();
    let target = req.uri.path_and_query().map_or_else(|| req.uri.path().to_owned(), |pq| pq.as_str().to_owned());
    let peer = req.extensions.get::<axum::extract::ConnectInfo<SocketAddr>>().map(|c| c.0);
    match answer(&shared, &req, &target).await {
        Ok(response) => response,
        Err(refusal) => {
            warn!(status = refusal.status, reason = %refusal.message, request = %truncate(&target), ?peer, "shuffle request refused");
            error_response(refusal)
        }
    }
}

fn truncate(s: &str) -> &str {
    let mut end = s.len().min(300);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

async fn answer(shared: &Shared, req: &axum::http::request::Parts, target: &str) -> Result<Response, Refusal> {
    let headers = &req.headers;
    let get = |name: &str| headers.get(name).map(HeaderValue::as_bytes);
    let parsed = request::parse(req.method.as_str(), target, get(HEADER_NAME), get(HEADER_VERSION))?;
    let app = parsed.app;
    let (user, secret) = {
        let jobs = shared.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let job = jobs.get(&app).ok_or_else(|| Refusal { status: 401, message: "could not find jobid".into() })?;
        (job.user.clone(), job.secret.clone())
    };
    let reply_hash = request::verify(get(HEADER_URL_HASH), &request::signed_message(shared.port, target), &secret)?;

    let mut segments = Vec::with_capacity(parsed.maps.len());
    let mut total: u64 = 0;
    for map in &parsed.maps {
        if !request::is_map_attempt_of(map, app) {
            return Err(Refusal { status: 404, message: format!("{map} is not a map attempt of {}", parsed.job) });
        }
        let internal = |e: NmError| Refusal { status: 500, message: e.to_string() };
        let dir = shared.layout.map_output_dir(&user, app, map).map_err(internal)?;
        let user_dir = shared.layout.user_dir(&user).map_err(internal)?;
        let (data, index) = (dir.join("file.out"), dir.join("file.out.index"));
        // Map outputs are files of the owner of usercache/<user> (the
        // containers' user), as Hadoop's SecureIOUtils checks: a link the
        // user made cannot serve someone else's file.
        let lookup = tokio::task::spawn_blocking(move || {
            let owner = crate::identity::owner_of(&user_dir).map_err(|e| NmError::io("read the owner of", &user_dir, e))?;
            let data_len = crate::identity::open_owned(&data, owner)
                .and_then(|f| f.metadata())
                .map_err(|e| NmError::io("open", &data, e))?
                .len();
            let index_file = crate::identity::open_owned(&index, owner).map_err(|e| NmError::io("open", &index, e))?;
            index::read_record_from(index_file, &index, parsed.reduce, data_len).map(|r| (r, data, owner))
        });
        let (record, data, owner) = lookup
            .await
            .map_err(|e| Refusal { status: 500, message: format!("reading the index of {map}: {e}") })?
            .map_err(internal)?;
        let header = writable::shuffle_header(map, record.part_length as i64, record.raw_length, parsed.reduce);
        total = total.saturating_add(header.len() as u64).saturating_add(record.part_length);
        segments.push(Segment {
            prefix: header.into(),
            source: Source::Owned(data, owner),
            offset: record.start_offset,
            length: record.part_length,
        });
    }
    debug!(application_id = %app, reduce = parsed.reduce, maps = segments.len(), bytes = total, "shuffle reply");

    let body = crate::body::segments(segments);
    let mut response = Response::new(body);
    let h = response.headers_mut();
    let value = |s: &str| HeaderValue::from_str(s).map_err(|e| Refusal { status: 500, message: e.to_string() });
    h.insert(HEADER_REPLY_HASH, value(&reply_hash)?);
    h.insert(HEADER_NAME, HeaderValue::from_static(request::DEFAULT_NAME));
    h.insert(HEADER_VERSION, HeaderValue::from_static(request::DEFAULT_VERSION));
    h.insert(header::CONTENT_LENGTH, value(&total.to_string())?);
    if !parsed.keep_alive {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(response)
}
