//! Writer schemas by Confluent schema id: the ids file (loaded once, at start-up) and the
//! Confluent Schema Registry (`GET {url}/schemas/ids/{id}`, cached).
//!
//! A lookup goes: cache of usable schemas → ids whose schema is unusable (cached for good:
//! a registry never changes the schema behind an id) → ids the registry recently answered
//! 404 for (cached for [`NOT_FOUND_TTL`], so a flood of bad ids does not hammer it) → one
//! registry request per id at a time (concurrent lookups of the same id wait for the first
//! and share its answer; different ids are fetched in parallel).
//!
//! A registry request blocks the calling thread for up to [`REGISTRY_TIMEOUT`].

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use spcvm_schemas::apache_avro::Schema;

use super::error::{DecodeError, DecodeSetupError, clip};
use super::writer::{load_avsc, parse_and_check};

/// How long a 404 from the registry is remembered before the id is asked for again.
pub const NOT_FOUND_TTL: Duration = Duration::from_secs(30);

/// Time limit for one registry request (connect, send, answer).
pub const REGISTRY_TIMEOUT: Duration = Duration::from_secs(5);

/// Most 404 answers remembered at once; beyond that the expired ones are dropped, and if
/// none has expired, all of them.
const MAX_NOT_FOUND: usize = 10_000;

/// Largest registry answer read, in bytes.
const MAX_ANSWER_BYTES: u64 = 4 * 1024 * 1024;

/// Writer schemas by id, from an ids file and/or a registry.
pub(crate) struct SchemaStore {
    /// Usable schemas: all of the ids file's, plus those fetched from the registry.
    schemas: RwLock<HashMap<u32, Arc<Schema>>>,
    /// Ids whose registry schema cannot be read as telemetry, with the reason.
    unusable: RwLock<HashMap<u32, Arc<str>>>,
    /// Ids the registry answered 404 for, with when that answer expires.
    not_found: RwLock<HashMap<u32, Instant>>,
    /// One lock per id being fetched, so concurrent lookups of an id make one request.
    inflight: Mutex<HashMap<u32, Arc<Mutex<()>>>>,
    /// The ids file, for messages.
    ids_file: Option<PathBuf>,
    /// The registry, if configured.
    registry: Option<RegistryClient>,
    /// How long a 404 is remembered ([`NOT_FOUND_TTL`]; shorter in tests).
    pub(crate) not_found_ttl: Duration,
}

impl SchemaStore {
    /// A store with the ids file's schemas (each checked) and an optional registry.
    pub(crate) fn new(
        ids_file: Option<&Path>,
        registry: Option<RegistryClient>,
    ) -> Result<Self, DecodeSetupError> {
        let schemas = match ids_file {
            Some(path) => load_ids_file(path)?,
            None => HashMap::new(),
        };
        Ok(SchemaStore {
            schemas: RwLock::new(schemas),
            unusable: RwLock::default(),
            not_found: RwLock::default(),
            inflight: Mutex::default(),
            ids_file: ids_file.map(Path::to_path_buf),
            registry,
            not_found_ttl: NOT_FOUND_TTL,
        })
    }

    /// The writer schema with this id.
    ///
    /// # Errors
    ///
    /// `unknown_schema_id` (in neither the ids file nor the registry), `avro` (the
    /// registry's schema cannot be read as telemetry), `registry` (transient).
    pub(crate) fn lookup(&self, id: u32) -> Result<Arc<Schema>, DecodeError> {
        if let Some(found) = self.cached(id)? {
            return Ok(found);
        }
        let Some(registry) = &self.registry else {
            return Err(self.not_in_ids_file(id));
        };
        // One request per id at a time; whoever waited re-checks the caches.
        let slot = {
            let mut inflight = self.inflight.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(inflight.entry(id).or_default())
        };
        let result = {
            let _guard = slot.lock().unwrap_or_else(PoisonError::into_inner);
            match self.cached(id) {
                Ok(Some(found)) => Ok(found),
                Err(e) => Err(e),
                Ok(None) => self.fetch_and_remember(registry, id),
            }
        };
        self.inflight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
        result
    }

    /// The cached answer for `id`, if any: a schema, or a remembered error.
    fn cached(&self, id: u32) -> Result<Option<Arc<Schema>>, DecodeError> {
        if let Some(schema) = read(&self.schemas).get(&id) {
            return Ok(Some(Arc::clone(schema)));
        }
        if let Some(reason) = read(&self.unusable).get(&id) {
            return Err(unusable(id, reason));
        }
        if let Some(&until) = read(&self.not_found).get(&id)
            && Instant::now() < until
        {
            return Err(DecodeError::UnknownSchemaId {
                id,
                reason: format!(
                    "{} (a 404 answer, remembered for {} s)",
                    self.where_looked(),
                    self.not_found_ttl.as_secs_f64()
                ),
            });
        }
        Ok(None)
    }

    fn fetch_and_remember(
        &self,
        registry: &RegistryClient,
        id: u32,
    ) -> Result<Arc<Schema>, DecodeError> {
        match registry.fetch(id) {
            Fetched::Schema(text) => match parse_and_check(&text) {
                Ok(schema) => {
                    let schema = Arc::new(schema);
                    write(&self.schemas).insert(id, Arc::clone(&schema));
                    write(&self.not_found).remove(&id);
                    Ok(schema)
                }
                Err(reason) => {
                    let reason: Arc<str> = reason.into();
                    write(&self.unusable).insert(id, Arc::clone(&reason));
                    Err(unusable(id, &reason))
                }
            },
            Fetched::Unusable(reason) => {
                let reason: Arc<str> = reason.into();
                write(&self.unusable).insert(id, Arc::clone(&reason));
                Err(unusable(id, &reason))
            }
            Fetched::NotFound(answer) => {
                let now = Instant::now();
                let mut not_found = write(&self.not_found);
                if not_found.len() >= MAX_NOT_FOUND {
                    not_found.retain(|_, until| *until > now);
                    if not_found.len() >= MAX_NOT_FOUND {
                        not_found.clear();
                    }
                }
                not_found.insert(id, now + self.not_found_ttl);
                Err(DecodeError::UnknownSchemaId {
                    id,
                    reason: format!("{} (404: {answer})", self.where_looked()),
                })
            }
            Fetched::Failed(reason) => Err(DecodeError::Registry { id, reason }),
        }
    }

    fn not_in_ids_file(&self, id: u32) -> DecodeError {
        let known: Vec<u32> = {
            let mut ids: Vec<u32> = read(&self.schemas).keys().copied().collect();
            ids.sort_unstable();
            ids
        };
        let listed = if known.len() <= 20 {
            format!("{known:?}")
        } else {
            format!("{} ids", known.len())
        };
        DecodeError::UnknownSchemaId {
            id,
            reason: format!(
                "not in the schema ids file `{}` (which lists {listed}) and no schema registry is configured",
                self.ids_file
                    .as_deref()
                    .map_or_else(|| "?".into(), |p| p.display().to_string())
            ),
        }
    }

    fn where_looked(&self) -> String {
        let registry = self.registry.as_ref().map_or_else(String::new, |r| {
            format!("the schema registry at {}", r.base)
        });
        match &self.ids_file {
            Some(path) => format!("not in `{}` nor {registry}", path.display()),
            None => format!("not in {registry}"),
        }
    }
}

fn unusable(id: u32, reason: &str) -> DecodeError {
    DecodeError::Avro {
        schema: format!("schema id {id} from the registry"),
        reason: format!("the writer schema cannot be read as telemetry: {reason}"),
        schema_id: Some(id),
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

/// Reads the ids file: a JSON object (or, for a `.toml` file, a TOML table) of schema id →
/// `.avsc` path relative to the ids file; each schema is parsed and checked.
fn load_ids_file(path: &Path) -> Result<HashMap<u32, Arc<Schema>>, DecodeSetupError> {
    let text = std::fs::read_to_string(path).map_err(|source| DecodeSetupError::Read {
        key: "schema_ids_file",
        path: path.to_path_buf(),
        source,
    })?;
    let ids_error = |reason: String| DecodeSetupError::IdsFile {
        path: path.to_path_buf(),
        reason,
    };
    let is_toml = path
        .extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("toml"));
    let entries: BTreeMap<String, String> = if is_toml {
        toml::from_str(&text).map_err(|e| {
            let line = e
                .span()
                .map(|span| 1 + text[..span.start.min(text.len())].matches('\n').count());
            ids_error(format!(
                "{}expected a TOML table of schema id = \"file.avsc\": {}",
                line.map_or_else(String::new, |l| format!("line {l}: ")),
                e.message()
            ))
        })?
    } else {
        serde_json::from_str(&text).map_err(|e| {
            ids_error(format!(
                "expected a JSON object {{\"<schema id>\": \"file.avsc\"}}: {e}"
            ))
        })?
    };
    if entries.is_empty() {
        return Err(ids_error("lists no schema ids".into()));
    }
    let dir = path.parent().unwrap_or(Path::new(""));
    let mut schemas = HashMap::with_capacity(entries.len());
    for (key, file) in entries {
        let id: u32 = key.trim().parse().map_err(|_| {
            ids_error(format!(
                "key {key:?} is not a schema id (an integer from 0 to {})",
                u32::MAX
            ))
        })?;
        let avsc = dir.join(&file);
        let schema = load_avsc(&avsc, "schema_ids_file", Some(id))?;
        if schemas.insert(id, Arc::new(schema)).is_some() {
            return Err(ids_error(format!("schema id {id} is listed twice")));
        }
    }
    Ok(schemas)
}

/// What the registry said about one id.
enum Fetched {
    /// The schema text (an Avro schema).
    Schema(String),
    /// A definite answer that can never be used (not Avro, schema references).
    Unusable(String),
    /// 404, with the answer's text.
    NotFound(String),
    /// Could not get an answer (worth retrying).
    Failed(String),
}

/// A Confluent Schema Registry client for `GET /schemas/ids/{id}`.
pub(crate) struct RegistryClient {
    /// Base URL without a trailing slash.
    base: String,
    /// `Basic ...` header value, if configured.
    authorization: Option<String>,
    agent: ureq::Agent,
}

/// The registry's answer to `GET /schemas/ids/{id}`.
#[derive(serde::Deserialize)]
struct SchemaAnswer {
    schema: String,
    #[serde(rename = "schemaType")]
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<serde_json::Value>,
}

impl RegistryClient {
    /// A client for the registry at `url`, with basic auth when both parts are given.
    /// Checks the URL's shape (the caller names the key in the error).
    pub(crate) fn new(
        url: &str,
        credentials: Option<(&str, &str)>,
    ) -> Result<Self, (&'static str, String)> {
        let url = url.trim();
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .ok_or((
                "schema_registry_url",
                format!("{url:?} must start with http:// or https://"),
            ))?;
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.is_empty() {
            return Err(("schema_registry_url", format!("{url:?} has no host")));
        }
        if authority.contains('@') {
            return Err((
                "schema_registry_url",
                "must not hold credentials: set `decode.schema_registry_username` and \
                 `decode.schema_registry_password` instead"
                    .into(),
            ));
        }
        if url.contains(['?', '#']) {
            return Err((
                "schema_registry_url",
                format!("{url:?} must be a base URL without query or fragment"),
            ));
        }
        let authorization = credentials.map(|(user, password)| {
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            format!("Basic {token}")
        });
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(REGISTRY_TIMEOUT))
            .http_status_as_error(false)
            .user_agent(concat!("spcvm/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        // Validate the final URL shape once, so a bad host is a config error.
        let probe = format!("{}/schemas/ids/0", url.trim_end_matches('/'));
        ureq::http::Uri::try_from(probe.as_str()).map_err(|e| {
            (
                "schema_registry_url",
                format!("{url:?} is not a valid URL: {e}"),
            )
        })?;
        Ok(RegistryClient {
            base: url.trim_end_matches('/').to_string(),
            authorization,
            agent,
        })
    }

    fn fetch(&self, id: u32) -> Fetched {
        let url = format!("{}/schemas/ids/{id}", self.base);
        let mut request = self.agent.get(&url).header(
            "Accept",
            "application/vnd.schemaregistry.v1+json, application/vnd.schemaregistry+json, application/json",
        );
        if let Some(authorization) = &self.authorization {
            request = request.header("Authorization", authorization);
        }
        let mut response = match request.call() {
            Ok(response) => response,
            Err(e) => return Fetched::Failed(clip(format!("GET {url}: {e}"))),
        };
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_string();
        let body = match body {
            Ok(body) => body,
            Err(e) => {
                return Fetched::Failed(clip(format!(
                    "GET {url}: HTTP {status}, reading the answer: {e}"
                )));
            }
        };
        match status {
            200 => {}
            404 => return Fetched::NotFound(clip(format!("GET {url}: {}", body.trim()))),
            401 | 403 => {
                return Fetched::Failed(clip(format!(
                    "GET {url}: HTTP {status} (check `decode.schema_registry_username` / \
                     `decode.schema_registry_password`): {}",
                    body.trim()
                )));
            }
            _ => {
                return Fetched::Failed(clip(format!("GET {url}: HTTP {status}: {}", body.trim())));
            }
        }
        let answer: SchemaAnswer = match serde_json::from_str(&body) {
            Ok(answer) => answer,
            Err(e) => {
                return Fetched::Failed(clip(format!(
                    "GET {url}: HTTP 200 but the answer is not {{\"schema\": \"...\"}}: {e}"
                )));
            }
        };
        if let Some(kind) = answer.schema_type.as_deref()
            && !kind.eq_ignore_ascii_case("AVRO")
        {
            return Fetched::Unusable(format!("it is a {kind} schema, not AVRO"));
        }
        if !answer.references.is_empty() {
            return Fetched::Unusable(format!(
                "it uses {} schema reference(s), which spcvm does not resolve",
                answer.references.len()
            ));
        }
        Fetched::Schema(answer.schema)
    }
}
