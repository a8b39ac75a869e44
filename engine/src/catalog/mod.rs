//! The live set of flows: what the flows folder holds, loaded and ready to run, with each
//! flow's webhook token.
//!
//! A [`Catalog`] keeps an immutable [`Snapshot`] that the gateway reads without locks held
//! across requests. [`Catalog::reload`] rescans the folder and swaps in a new snapshot: a file
//! whose bytes did not change, and whose `.wasm` plugin files did not either, is kept as it is;
//! a changed one is parsed and its plugins loaded; a file that fails keeps its last good
//! version serving and carries its errors; a deleted file is dropped. [`Catalog::watch`] calls
//! `reload` when the folder, or a folder holding a plugin file a flow names, changes.
//!
//! A flow's version is the hash of its file and of every plugin it uses (built-ins by their
//! embedded bytes), so rebuilding a plugin makes a new version. Each version is stored with
//! its source and its plugins' bytes (by content hash), and a run accepted under an older
//! version executes exactly that version's code, rebuilt from the store when needed and kept
//! in a bounded cache of recently used versions.

mod watch;

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use sha2::{Digest, Sha256};

use crate::events::Events;
use crate::flow::{self, Diagnostic, Flow, PluginPlaces, PluginRef};
use crate::plugin::{Plugin, PluginHost};
use crate::store::{PluginBlob, Store};
use std::time::SystemTime;

pub use watch::Watcher;

/// Why the catalog could not start.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read the flows folder {}: {source}", dir.display())]
    ReadDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot watch the flows folder {}: {message}", dir.display())]
    Watch { dir: PathBuf, message: String },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// A flow ready to run: the parsed flow and its loaded plugins, one per step.
pub struct LiveFlow {
    pub flow: Flow,
    pub plugins: Vec<Plugin>,
}

/// One flow file as the catalog sees it.
pub struct FlowEntry {
    /// The flow id (the file stem).
    pub id: String,
    /// The file.
    pub file: PathBuf,
    /// The webhook URL token; `None` for a file whose name is not a valid flow id.
    pub token: Option<String>,
    /// The token before the latest rotation and until when the gateway still accepts it.
    pub previous_token: Option<(String, SystemTime)>,
    /// The version serving webhooks: the newest that loaded without errors.
    pub live: Option<Arc<LiveFlow>>,
    /// The errors of the file as it is now; empty when it loaded.
    pub errors: Vec<Diagnostic>,
    /// SHA-256 of the file's bytes as last read.
    source_hash: [u8; 32],
    /// The `.wasm` files the flow's steps name, each with the content hash it had when the
    /// flow was loaded (empty when it could not be read): a change to one reloads the flow.
    plugin_files: Vec<(PathBuf, String)>,
}

impl FlowEntry {
    /// `ok` when the file as it is now is serving; `error` otherwise.
    pub fn status(&self) -> &'static str {
        if self.errors.is_empty() {
            "ok"
        } else {
            "error"
        }
    }

    /// Whether every plugin file is as it was when the flow was loaded.
    fn plugin_files_unchanged(&self) -> bool {
        self.plugin_files
            .iter()
            .all(|(path, hash)| file_hash(path).unwrap_or_default() == *hash)
    }

    /// The `.wasm` files the flow's steps name.
    pub fn plugin_files(&self) -> impl Iterator<Item = &Path> {
        self.plugin_files.iter().map(|(path, _)| path.as_path())
    }
}

/// How many earlier flow versions are kept compiled for runs accepted before an edit; older
/// ones are rebuilt from the store when a run needs them again.
const VERSIONS_KEPT: NonZeroUsize = NonZeroUsize::new(32).expect("not zero");

/// A step's plugin as the catalog loaded it.
struct LoadedPlugin {
    plugin: Plugin,
    /// Its bytes and content hash, kept with the flow version.
    blob: PluginBlob,
}

/// The hex SHA-256 of `bytes`: a plugin's content hash.
fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The content hash of the file at `path`, `None` when it cannot be read.
fn file_hash(path: &Path) -> Option<String> {
    std::fs::read(path).ok().map(|bytes| content_hash(&bytes))
}

/// A flow's version: the first 16 hex digits of the SHA-256 of its source and of its steps'
/// plugins' content hashes, in step order.
fn version_of(source: &str, plugins: &[LoadedPlugin]) -> String {
    let mut hash = Sha256::new();
    hash.update(source.as_bytes());
    for plugin in plugins {
        hash.update(b"\0");
        hash.update(plugin.blob.hash.as_bytes());
    }
    hex::encode(&hash.finalize()[..8])
}

/// The flows at one moment.
#[derive(Default)]
pub struct Snapshot {
    pub flows: BTreeMap<String, Arc<FlowEntry>>,
}

/// What a reload changed, for logs and tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReloadReport {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    pub failed: Vec<String>,
}

/// The live set of flows. Cheap to clone.
#[derive(Clone)]
pub struct Catalog {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    host: Arc<PluginHost>,
    store: Store,
    public_url: String,
    /// Where flows may load `.wasm` plugins from.
    plugin_places: PluginPlaces,
    snapshot: RwLock<Arc<Snapshot>>,
    /// Built-ins, compiled once per process, with their content hashes.
    builtins: Mutex<HashMap<String, (Plugin, PluginBlob)>>,
    /// Earlier versions rebuilt from the store, for runs accepted before an edit; the least
    /// recently used are dropped past [`VERSIONS_KEPT`].
    versions: Mutex<lru::LruCache<(String, String), Arc<LiveFlow>>>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
    /// Where flow changes (here) and runs (gateway, executor) are published for live pages.
    events: Events,
}

impl Catalog {
    /// Loads every flow in `dir`, whose `.wasm` plugins must be in `plugin_places`. Flows with
    /// errors are reported, not fatal.
    pub async fn open(
        dir: &Path,
        host: Arc<PluginHost>,
        store: Store,
        public_url: &str,
        plugin_places: PluginPlaces,
    ) -> Result<Catalog, CatalogError> {
        let catalog = Catalog {
            inner: Arc::new(Inner {
                dir: dir.to_owned(),
                host,
                store,
                public_url: public_url.trim_end_matches('/').to_owned(),
                plugin_places,
                snapshot: RwLock::new(Arc::new(Snapshot::default())),
                builtins: Mutex::new(HashMap::new()),
                versions: Mutex::new(lru::LruCache::new(VERSIONS_KEPT)),
                reloading: tokio::sync::Mutex::new(()),
                events: Events::new(),
            }),
        };
        catalog.reload().await?;
        Ok(catalog)
    }

    /// The event bus of this server: flow reloads, and runs as the gateway and executor see them.
    pub fn events(&self) -> &Events {
        &self.inner.events
    }

    /// The flows folder.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The current flows.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.inner
            .snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The URL senders post to for a flow.
    pub fn webhook_url(&self, entry: &FlowEntry) -> Option<String> {
        entry
            .token
            .as_ref()
            .map(|token| format!("{}/hooks/{}/{}", self.inner.public_url, entry.id, token))
    }

    /// Rescans the folder and swaps in the new set of flows.
    pub async fn reload(&self) -> Result<ReloadReport, CatalogError> {
        let _one_at_a_time = self.inner.reloading.lock().await;
        let old = self.snapshot();
        let files = list_flow_files(&self.inner.dir)?;
        let mut report = ReloadReport::default();
        let mut flows = BTreeMap::new();
        for (id, file) in files {
            let bytes = match std::fs::read(&file) {
                Ok(bytes) => bytes,
                // Gone between the listing and the read: the next event reloads again.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    let entry = self.failed_entry(
                        &old,
                        &id,
                        &file,
                        [0; 32],
                        Vec::new(),
                        vec![Diagnostic {
                            file: file.clone(),
                            line: 1,
                            column: 1,
                            message: format!("cannot read the file: {e}"),
                        }],
                    );
                    let entry = entry.await?;
                    report.failed.push(id.clone());
                    flows.insert(id, Arc::new(entry));
                    continue;
                }
            };
            let hash: [u8; 32] = Sha256::digest(&bytes).into();
            if let Some(previous) = old.flows.get(&id)
                && previous.source_hash == hash
                && previous.file == file
                && previous.plugin_files_unchanged()
            {
                flows.insert(id, previous.clone());
                continue;
            }
            let entry = self.load_entry(&old, &id, &file, &bytes, hash).await?;
            if !entry.errors.is_empty() {
                report.failed.push(id.clone());
                for d in &entry.errors {
                    tracing::warn!(flow = %id, "{d}");
                }
            } else if old.flows.contains_key(&id) {
                report.changed.push(id.clone());
            } else {
                report.added.push(id.clone());
            }
            flows.insert(id, Arc::new(entry));
        }
        report.removed = old
            .flows
            .keys()
            .filter(|id| !flows.contains_key(*id))
            .cloned()
            .collect();
        for id in &report.added {
            tracing::info!(flow = %id, "flow added");
        }
        for id in &report.changed {
            tracing::info!(flow = %id, "flow reloaded");
        }
        for id in &report.removed {
            tracing::info!(flow = %id, "flow removed");
        }
        *self
            .inner
            .snapshot
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(Snapshot { flows });
        self.inner.events.flows_reloaded(&report);
        Ok(report)
    }

    /// Gives the flow a new webhook token; the gateway keeps accepting the one it replaces
    /// for `overlap` (until the time answered). `None` when there is no such flow (or its
    /// file name is not a flow id, so it has no URL).
    pub async fn rotate_token(
        &self,
        flow_id: &str,
        overlap: std::time::Duration,
    ) -> Result<Option<(String, SystemTime)>, CatalogError> {
        // A reload in progress would swap in a snapshot read before the rotation.
        let _one_at_a_time = self.inner.reloading.lock().await;
        let old = self.snapshot();
        let Some(entry) = old.flows.get(flow_id).filter(|e| e.token.is_some()) else {
            return Ok(None);
        };
        let now = SystemTime::now();
        let until = now.checked_add(overlap).unwrap_or(now);
        let store = &self.inner.store;
        let token = store.rotate_token(flow_id, until).await?;
        let previous_token = store.previous_token(flow_id)?;
        let mut flows = old.flows.clone();
        flows.insert(
            flow_id.to_owned(),
            Arc::new(FlowEntry {
                id: entry.id.clone(),
                file: entry.file.clone(),
                token: Some(token.clone()),
                previous_token,
                live: entry.live.clone(),
                errors: entry.errors.clone(),
                source_hash: entry.source_hash,
                plugin_files: entry.plugin_files.clone(),
            }),
        );
        *self
            .inner
            .snapshot
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(Snapshot { flows });
        tracing::info!(flow = %flow_id, "webhook token rotated");
        Ok(Some((token, until)))
    }

    /// The flow a run was accepted for, at the version it was accepted with: the live one
    /// when it is still current, else rebuilt from the source and plugins kept in the store,
    /// so every run executes the version it records.
    pub async fn flow_version(&self, id: &str, version: &str) -> Result<Arc<LiveFlow>, String> {
        let snapshot = self.snapshot();
        let entry = snapshot.flows.get(id);
        if let Some(live) = entry.and_then(|e| e.live.as_ref())
            && live.flow.version == version
        {
            return Ok(live.clone());
        }
        let key = (id.to_owned(), version.to_owned());
        if let Some(live) = self
            .inner
            .versions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(live.clone());
        }
        let store = &self.inner.store;
        let source = match store.flow_version(id, version) {
            Ok(Some(source)) => source,
            Ok(None) => return Err(format!("flow '{id}' version {version} is not stored")),
            Err(e) => return Err(format!("reading flow '{id}' version {version}: {e}")),
        };
        let hashes = store
            .flow_version_plugins(id, version)
            .map_err(|e| format!("reading flow '{id}' version {version}: {e}"))?;
        let file = entry
            .map(|e| e.file.clone())
            .unwrap_or_else(|| self.inner.dir.join(format!("{id}.toml")));
        let mut flow = flow::parse_flow_with(&file, &source, &self.load_context())
            .map_err(|d| format!("flow '{id}' version {version} no longer loads: {d}"))?;
        let plugins = match hashes {
            Some(hashes) => self
                .stored_plugins(&flow, &hashes)
                .await
                .map_err(|e| format!("flow '{id}' version {version}: {e}"))?,
            // Kept before plugins were stored with their versions: the files as they are now.
            None => self
                .load_plugins(&flow, &file)
                .await
                .1
                .map_err(|d| format!("flow '{id}' version {version}: {}", flow::Diagnostics(d)))?
                .into_iter()
                .map(|loaded| loaded.plugin)
                .collect(),
        };
        flow.version = version.to_owned();
        let live = Arc::new(LiveFlow { flow, plugins });
        self.inner
            .versions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .put(key, live.clone());
        Ok(live)
    }

    /// The plugins of a stored version, by the content hashes it recorded: a built-in whose
    /// embedded bytes still have that hash, else the bytes kept in the store.
    async fn stored_plugins(&self, flow: &Flow, hashes: &[String]) -> Result<Vec<Plugin>, String> {
        if hashes.len() != flow.steps.len() {
            return Err(format!(
                "the store keeps {} plugins for {} steps",
                hashes.len(),
                flow.steps.len()
            ));
        }
        let mut plugins = Vec::with_capacity(hashes.len());
        for (step, hash) in flow.steps.iter().zip(hashes) {
            if let PluginRef::Builtin(name) = &step.plugin
                && let Ok((plugin, blob)) = self.builtin(name).await
                && blob.hash == *hash
            {
                plugins.push(plugin);
                continue;
            }
            let bytes = self
                .inner
                .store
                .plugin_blob(hash)
                .map_err(|e| format!("reading the plugin of step '{}': {e}", step.id))?
                .ok_or_else(|| {
                    format!("the plugin of step '{}' ({hash}) is not stored", step.id)
                })?;
            let name = match &step.plugin {
                PluginRef::Builtin(name) => name.clone(),
                PluginRef::Path(path) => path.display().to_string(),
            };
            let plugin = self
                .inner
                .host
                .compile(name, bytes.into())
                .await
                .map_err(|e| format!("in step '{}': {e}", step.id))?;
            plugins.push(plugin);
        }
        Ok(plugins)
    }

    /// Watches the folder and reloads when it changes; stops when the [`Watcher`] is dropped.
    pub fn watch(&self) -> Result<Watcher, CatalogError> {
        Watcher::start(self.clone())
    }

    async fn load_entry(
        &self,
        old: &Snapshot,
        id: &str,
        file: &Path,
        bytes: &[u8],
        hash: [u8; 32],
    ) -> Result<FlowEntry, CatalogError> {
        let source = match std::str::from_utf8(bytes) {
            Ok(source) => source,
            Err(e) => {
                let message = format!("the file is not UTF-8: {e}");
                return self
                    .failed_entry(
                        old,
                        id,
                        file,
                        hash,
                        Vec::new(),
                        vec![Diagnostic {
                            file: file.to_owned(),
                            line: 1,
                            column: 1,
                            message,
                        }],
                    )
                    .await;
            }
        };
        let parsed = flow::parse_flow_with(file, source, &self.load_context());
        let mut flow = match parsed {
            Ok(flow) => flow,
            Err(diagnostics) => {
                return self
                    .failed_entry(old, id, file, hash, Vec::new(), diagnostics.0)
                    .await;
            }
        };
        let (plugin_files, loaded) = self.load_plugins(&flow, file).await;
        let loaded = match loaded {
            Ok(loaded) => loaded,
            Err(errors) => {
                return self
                    .failed_entry(old, id, file, hash, plugin_files, errors)
                    .await;
            }
        };
        flow.version = version_of(source, &loaded);
        let (plugins, blobs): (Vec<_>, Vec<_>) = loaded
            .into_iter()
            .map(|loaded| (loaded.plugin, loaded.blob))
            .unzip();
        let store = &self.inner.store;
        store
            .put_flow_version(id, &flow.version, source, blobs)
            .await?;
        let token = store.token_for(id).await?;
        let previous_token = store.previous_token(id)?;
        Ok(FlowEntry {
            id: id.to_owned(),
            file: file.to_owned(),
            token: Some(token),
            previous_token,
            live: Some(Arc::new(LiveFlow { flow, plugins })),
            errors: Vec::new(),
            source_hash: hash,
            plugin_files,
        })
    }

    /// An entry for a file that did not load: the last good version keeps serving.
    async fn failed_entry(
        &self,
        old: &Snapshot,
        id: &str,
        file: &Path,
        hash: [u8; 32],
        plugin_files: Vec<(PathBuf, String)>,
        errors: Vec<Diagnostic>,
    ) -> Result<FlowEntry, CatalogError> {
        let (token, previous_token) = if flow::FlowId::new(id).is_ok() {
            (
                Some(self.inner.store.token_for(id).await?),
                self.inner.store.previous_token(id)?,
            )
        } else {
            (None, None)
        };
        Ok(FlowEntry {
            id: id.to_owned(),
            file: file.to_owned(),
            token,
            previous_token,
            live: old.flows.get(id).and_then(|e| e.live.clone()),
            errors,
            source_hash: hash,
            plugin_files,
        })
    }

    /// What flow files are read with: the process environment, the built-in plugins, and the
    /// places `.wasm` plugins may be.
    fn load_context(&self) -> flow::LoadContext<'_> {
        flow::LoadContext {
            env: &|name: &str| std::env::var(name).ok(),
            is_builtin: &|name: &str| PluginHost::builtin_names().any(|n| n == name),
            plugin_exists: &|plugin: &Path| plugin.is_file(),
            plugin_places: &self.inner.plugin_places,
        }
    }

    /// A built-in plugin and its content hash, compiled once per process (off the runtime's
    /// workers; reloads are one at a time, so two compiles of one built-in are rare and
    /// harmless).
    async fn builtin(
        &self,
        name: &str,
    ) -> Result<(Plugin, PluginBlob), crate::plugin::PluginError> {
        let builtins = || {
            self.inner
                .builtins
                .lock()
                .unwrap_or_else(|e| e.into_inner())
        };
        if let Some(found) = builtins().get(name) {
            return Ok(found.clone());
        }
        let plugin = self.inner.host.compile_builtin(name).await?;
        let bytes = PluginHost::builtin_bytes(name).unwrap_or_default();
        let blob = PluginBlob {
            hash: content_hash(bytes),
            bytes: bytes.into(),
        };
        Ok(builtins()
            .entry(name.to_owned())
            .or_insert((plugin, blob))
            .clone())
    }

    /// Loads each step's plugin, with the `.wasm` files the steps name and their content
    /// hashes (empty for a file that cannot be read), whether or not every plugin loaded.
    #[allow(clippy::type_complexity)]
    async fn load_plugins(
        &self,
        flow: &Flow,
        file: &Path,
    ) -> (
        Vec<(PathBuf, String)>,
        Result<Vec<LoadedPlugin>, Vec<Diagnostic>>,
    ) {
        let mut plugins = Vec::with_capacity(flow.steps.len());
        let mut files = Vec::new();
        let mut errors = Vec::new();
        for step in &flow.steps {
            let loaded = match &step.plugin {
                PluginRef::Builtin(name) => self
                    .builtin(name)
                    .await
                    .map(|(plugin, blob)| LoadedPlugin { plugin, blob }),
                PluginRef::Path(path) => match std::fs::read(path) {
                    Ok(bytes) => {
                        let hash = content_hash(&bytes);
                        files.push((path.clone(), hash.clone()));
                        let bytes: Arc<[u8]> = bytes.into();
                        self.inner
                            .host
                            .compile(path.display().to_string(), bytes.clone())
                            .await
                            .map(|plugin| LoadedPlugin {
                                plugin,
                                blob: PluginBlob { hash, bytes },
                            })
                    }
                    Err(e) => {
                        files.push((path.clone(), String::new()));
                        Err(crate::plugin::PluginError::Read {
                            path: path.clone(),
                            message: e.to_string(),
                        })
                    }
                },
            };
            match loaded {
                Ok(loaded) => {
                    errors.extend(check_config(flow, step, &loaded.plugin, file).await);
                    plugins.push(loaded);
                }
                Err(e) => {
                    let (line, column) = step.plugin_at;
                    errors.push(Diagnostic {
                        file: file.to_owned(),
                        line,
                        column,
                        message: format!("in step '{}': {e}", step.id),
                    });
                }
            }
        }
        let loaded = if errors.is_empty() {
            Ok(plugins)
        } else {
            Err(errors)
        };
        (files, loaded)
    }
}

/// What a step's plugin says of the step's config (its `validate-config`), as an error at the
/// step's `config` value; `None` when the plugin accepts it. Shared by `serve`, `validate` and
/// `run`. The message passes through the flow's redactor: a plugin may quote a config value
/// that came from `${ENV}`.
pub async fn check_config(
    flow: &Flow,
    step: &flow::Step,
    plugin: &Plugin,
    file: &Path,
) -> Option<Diagnostic> {
    let limits = crate::plugin::Limits {
        timeout: step
            .timeout
            .unwrap_or(crate::plugin::Limits::default().timeout),
        memory: step
            .memory
            .unwrap_or(crate::plugin::Limits::default().memory),
        ..crate::plugin::Limits::default()
    };
    let refused = plugin
        .validate_config(&step.config.to_string(), &limits)
        .await
        .err()?;
    let mut message = format!("in step '{}': config: {refused}", step.id);
    flow.redactor.string(&mut message);
    let (line, column) = step.config_at;
    Some(Diagnostic {
        file: file.to_owned(),
        line,
        column,
        message,
    })
}

/// The `*.toml` files of the folder, by flow id (the file stem). Hidden files and editor
/// temporaries (`.x.toml.swp`, `x.toml~`) are not flows.
fn list_flow_files(dir: &Path) -> Result<Vec<(String, PathBuf)>, CatalogError> {
    let read = std::fs::read_dir(dir).map_err(|source| CatalogError::ReadDir {
        dir: dir.to_owned(),
        source,
    })?;
    let mut files = Vec::new();
    for entry in read.flatten() {
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.starts_with('.') || !path.is_file() {
            continue;
        }
        if let Some(stem) = name.strip_suffix(".toml") {
            files.push((stem.to_owned(), path.clone()));
        }
    }
    files.sort();
    Ok(files)
}
