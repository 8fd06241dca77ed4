//! Durable state in SQLite: API keys (hashed), sandboxes and their owners,
//! and the hash-chained audit log. Every query is plain SQL that PostgreSQL
//! also accepts, behind this one type, so a second backend can be added
//! without touching the handlers.

use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("state database file {path}")]
    File {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub struct Store {
    db: Mutex<Connection>,
}

pub use aibox_types::api::{AuditEntry, KeyView as KeyInfo, Scope};

/// A scope as the database spells it.
fn parse_scope(s: &str) -> Scope {
    if s == "admin" {
        Scope::Admin
    } else {
        Scope::User
    }
}

/// A sandbox as the server knows it.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: String,
    pub owner: String,
    pub state: String,
    pub spec: serde_json::Value,
    pub labels: serde_json::Map<String, serde_json::Value>,
    pub isolation: serde_json::Value,
    pub created_ms: u64,
    pub expires_ms: Option<u64>,
    pub idempotency_key: Option<String>,
    /// Destroy after this long without API activity.
    pub idle_timeout_ms: Option<u64>,
    pub last_active_ms: u64,
    /// While paused: the TTL left when it was paused (the clock stops).
    pub remaining_ms: Option<u64>,
    /// The access token of the sandbox's published ports.
    pub port_token: String,
    /// Published ports answer without the token.
    pub public_ports: bool,
}

/// A snapshot as the server knows it: who owns it, and the runtime's
/// description of it (`aibox_runtime::SnapshotMeta` as JSON).
#[derive(Debug, Clone)]
pub struct SnapshotRow {
    pub id: String,
    pub owner: String,
    pub name: Option<String>,
    pub source: String,
    pub created_ms: u64,
    pub meta: serde_json::Value,
}

fn snapshot_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<SnapshotRow> {
    let meta: String = r.get(5)?;
    Ok(SnapshotRow {
        id: r.get(0)?,
        owner: r.get(1)?,
        name: r.get(2)?,
        source: r.get(3)?,
        created_ms: r.get::<_, i64>(4)? as u64,
        meta: serde_json::from_str(&meta).unwrap_or(serde_json::Value::Null),
    })
}

/// A volume as the server knows it: who owns it, by which name (unique
/// per owner), and its quota (what counts against the owner's). The
/// runtime keeps the rest (`aibox_runtime::volume::VolumeMeta`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeRow {
    pub id: String,
    pub owner: String,
    pub name: String,
    pub size_bytes: u64,
    pub created_ms: u64,
}

fn volume_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<VolumeRow> {
    Ok(VolumeRow {
        id: r.get(0)?,
        owner: r.get(1)?,
        name: r.get(2)?,
        size_bytes: r.get::<_, i64>(3)? as u64,
        created_ms: r.get::<_, i64>(4)? as u64,
    })
}

/// A workspace as the server keeps it: who owns it, its name (unique per
/// owner), the volume that holds its files, its environment and labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceRow {
    pub id: String,
    pub owner: String,
    pub name: String,
    pub volume: String,
    pub env: std::collections::BTreeMap<String, String>,
    pub labels: std::collections::BTreeMap<String, String>,
    pub created_ms: u64,
}

fn workspace_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<WorkspaceRow> {
    let env: String = r.get(4)?;
    let labels: String = r.get(5)?;
    Ok(WorkspaceRow {
        id: r.get(0)?,
        owner: r.get(1)?,
        name: r.get(2)?,
        volume: r.get(3)?,
        env: serde_json::from_str(&env).unwrap_or_default(),
        labels: serde_json::from_str(&labels).unwrap_or_default(),
        created_ms: r.get::<_, i64>(6)? as u64,
    })
}

const WORKSPACE_COLUMNS: &str = "id, owner, name, volume, env, labels, created_ms";

pub fn sha256_hex(data: &[u8]) -> String {
    let d = Sha256::digest(data);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    scope TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    revoked_ms BIGINT,
    max_sandboxes BIGINT,
    max_memory BIGINT,
    ceiling TEXT
);
CREATE TABLE IF NOT EXISTS sandboxes (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    state TEXT NOT NULL,
    spec TEXT NOT NULL,
    labels TEXT NOT NULL,
    isolation TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT,
    idempotency_key TEXT,
    idle_timeout_ms BIGINT,
    last_active_ms BIGINT NOT NULL DEFAULT 0,
    remaining_ms BIGINT,
    port_token TEXT NOT NULL DEFAULT '',
    public_ports BIGINT NOT NULL DEFAULT 0,
    UNIQUE (owner, idempotency_key)
);
CREATE TABLE IF NOT EXISTS snapshots (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    name TEXT,
    source TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    meta TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS volumes (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    created_ms BIGINT NOT NULL,
    UNIQUE (owner, name)
);
CREATE TABLE IF NOT EXISTS workspaces (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    volume TEXT NOT NULL,
    env TEXT NOT NULL,
    labels TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    UNIQUE (owner, name)
);
CREATE TABLE IF NOT EXISTS workspace_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    event TEXT NOT NULL,
    sandbox TEXT,
    snapshot TEXT,
    from_snapshot TEXT
);
CREATE INDEX IF NOT EXISTS workspace_events_by_workspace ON workspace_events (workspace, seq);
CREATE TABLE IF NOT EXISTS audit (
    seq BIGINT PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    sandbox TEXT,
    detail TEXT NOT NULL,
    prev TEXT NOT NULL,
    hash TEXT NOT NULL
);
";

fn row_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    let json = |i: usize| -> rusqlite::Result<serde_json::Value> {
        let s: String = r.get(i)?;
        Ok(serde_json::from_str(&s).unwrap_or(serde_json::Value::Null))
    };
    Ok(Row {
        id: r.get(0)?,
        owner: r.get(1)?,
        state: r.get(2)?,
        spec: json(3)?,
        labels: match json(4)? {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        },
        isolation: json(5)?,
        created_ms: r.get::<_, i64>(6)? as u64,
        expires_ms: r.get::<_, Option<i64>>(7)?.map(|v| v as u64),
        idempotency_key: r.get(8)?,
        idle_timeout_ms: r.get::<_, Option<i64>>(9)?.map(|v| v as u64),
        last_active_ms: r.get::<_, i64>(10)? as u64,
        remaining_ms: r.get::<_, Option<i64>>(11)?.map(|v| v as u64),
        port_token: r.get(12)?,
        public_ports: r.get::<_, i64>(13)? != 0,
    })
}

/// Columns added after the first release, for databases made before them.
const ADDED_COLUMNS: [(&str, &str, &str); 3] = [
    ("sandboxes", "port_token", "TEXT NOT NULL DEFAULT ''"),
    ("sandboxes", "public_ports", "BIGINT NOT NULL DEFAULT 0"),
    ("api_keys", "ceiling", "TEXT"),
];

fn migrate(db: &Connection) -> Result<(), StoreError> {
    for (table, column, decl) in ADDED_COLUMNS {
        let present: i64 = db.query_row(
            &format!("SELECT COUNT(*) FROM pragma_table_info('{table}') WHERE name = ?1"),
            params![column],
            |r| r.get(0),
        )?;
        if present == 0 {
            db.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))?;
        }
    }
    // Sandboxes from before published ports get a token of their own.
    db.execute_batch(
        "UPDATE sandboxes SET port_token = lower(hex(randomblob(16))) WHERE port_token = ''",
    )?;
    Ok(())
}

/// The database holds every tenant's specs (environment secrets), port
/// tokens and the audit log: it and its WAL and shared-memory files are
/// the server's alone, 0600 (the review's M8). SQLite gives the WAL and
/// SHM files the database file's own mode, so making that file first is
/// enough; files from an older server are tightened.
fn private_files(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let io = |source: std::io::Error| StoreError::File {
        path: path.to_path_buf(),
        source,
    };
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
            _ => {}
        }
    }
    Ok(())
}

const COLUMNS: &str = "id, owner, state, spec, labels, isolation, created_ms, expires_ms, idempotency_key, idle_timeout_ms, last_active_ms, remaining_ms, port_token, public_ports";

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        private_files(path)?;
        let db = Connection::open(path)?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "NORMAL")?;
        db.execute_batch(SCHEMA)?;
        migrate(&db)?;
        Ok(Store { db: Mutex::new(db) })
    }

    pub fn in_memory() -> Result<Store, StoreError> {
        let db = Connection::open_in_memory()?;
        db.execute_batch(SCHEMA)?;
        Ok(Store { db: Mutex::new(db) })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ---- keys

    pub fn key_count(&self) -> Result<u64, StoreError> {
        Ok(self
            .db()
            .query_row("SELECT COUNT(*) FROM api_keys", [], |r| r.get::<_, i64>(0))?
            as u64)
    }

    pub fn add_key(
        &self,
        id: &str,
        name: &str,
        secret: &str,
        scope: Scope,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.db().execute(
            "INSERT INTO api_keys (id, name, hash, scope, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                id,
                name,
                sha256_hex(secret.as_bytes()),
                scope.as_str(),
                now_ms as i64
            ],
        )?;
        Ok(())
    }

    /// The live key whose secret is `secret`.
    pub fn find_key(&self, secret: &str) -> Result<Option<KeyInfo>, StoreError> {
        Ok(self
            .db()
            .prepare_cached(
                "SELECT id, name, scope, created_ms, revoked_ms, max_sandboxes, max_memory, ceiling FROM api_keys WHERE hash = ?1 AND revoked_ms IS NULL",
            )?
            .query_row(params![sha256_hex(secret.as_bytes())], key_of)
            .optional()?)
    }

    /// The live key with this id.
    pub fn key_by_id(&self, id: &str) -> Result<Option<KeyInfo>, StoreError> {
        Ok(self
            .db()
            .prepare_cached(
                "SELECT id, name, scope, created_ms, revoked_ms, max_sandboxes, max_memory, ceiling FROM api_keys WHERE id = ?1 AND revoked_ms IS NULL",
            )?
            .query_row(params![id], key_of)
            .optional()?)
    }

    pub fn list_keys(&self) -> Result<Vec<KeyInfo>, StoreError> {
        let db = self.db();
        let mut st = db.prepare(
            "SELECT id, name, scope, created_ms, revoked_ms, max_sandboxes, max_memory, ceiling FROM api_keys ORDER BY created_ms, id",
        )?;
        let v = st.query_map([], key_of)?.collect::<Result<_, _>>()?;
        Ok(v)
    }

    pub fn set_quota(
        &self,
        id: &str,
        max_sandboxes: Option<u64>,
        max_memory: Option<u64>,
    ) -> Result<(), StoreError> {
        self.db().execute(
            "UPDATE api_keys SET max_sandboxes = ?2, max_memory = ?3 WHERE id = ?1",
            params![
                id,
                max_sandboxes.map(|v| v as i64),
                max_memory.map(|v| v as i64)
            ],
        )?;
        Ok(())
    }

    /// Set (or with None clear) a live key's own ceiling; false when no
    /// live key has this id.
    pub fn set_ceiling(
        &self,
        id: &str,
        ceiling: Option<&aibox_types::ceiling::Ceiling>,
    ) -> Result<bool, StoreError> {
        let text = ceiling.map(|c| serde_json::to_string(c).unwrap_or_default());
        Ok(self.db().execute(
            "UPDATE api_keys SET ceiling = ?2 WHERE id = ?1 AND revoked_ms IS NULL",
            params![id, text],
        )? == 1)
    }

    /// Returns false when no live key has this id.
    pub fn revoke_key(&self, id: &str, now_ms: u64) -> Result<bool, StoreError> {
        Ok(self.db().execute(
            "UPDATE api_keys SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL",
            params![id, now_ms as i64],
        )? == 1)
    }

    // ---- sandboxes

    pub fn insert(&self, r: &Row) -> Result<(), StoreError> {
        self.db().execute(
            &format!(
                "INSERT INTO sandboxes ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
            ),
            params![
                r.id,
                r.owner,
                r.state,
                r.spec.to_string(),
                serde_json::Value::Object(r.labels.clone()).to_string(),
                r.isolation.to_string(),
                r.created_ms as i64,
                r.expires_ms.map(|v| v as i64),
                r.idempotency_key,
                r.idle_timeout_ms.map(|v| v as i64),
                r.last_active_ms as i64,
                r.remaining_ms.map(|v| v as i64),
                r.port_token,
                i64::from(r.public_ports),
            ],
        )?;
        Ok(())
    }

    pub fn set_running(&self, id: &str, isolation: &serde_json::Value) -> Result<(), StoreError> {
        self.db().execute(
            "UPDATE sandboxes SET state = 'running', isolation = ?2 WHERE id = ?1",
            params![id, isolation.to_string()],
        )?;
        Ok(())
    }

    pub fn set_state(&self, id: &str, state: &str) -> Result<(), StoreError> {
        self.db().execute(
            "UPDATE sandboxes SET state = ?2 WHERE id = ?1",
            params![id, state],
        )?;
        Ok(())
    }

    pub fn set_ports(&self, id: &str, token: &str, public: bool) -> Result<(), StoreError> {
        self.db().execute(
            "UPDATE sandboxes SET port_token = ?2, public_ports = ?3 WHERE id = ?1",
            params![id, token, i64::from(public)],
        )?;
        Ok(())
    }

    pub fn set_expiry(&self, id: &str, expires_ms: Option<u64>) -> Result<(), StoreError> {
        self.db().execute(
            "UPDATE sandboxes SET expires_ms = ?2 WHERE id = ?1",
            params![id, expires_ms.map(|v| v as i64)],
        )?;
        Ok(())
    }

    /// Pause bookkeeping: `remaining_ms` is the TTL left, kept while paused.
    pub fn set_paused(&self, id: &str, remaining_ms: Option<u64>) -> Result<(), StoreError> {
        self.db().execute(
            "UPDATE sandboxes SET state = 'paused', remaining_ms = ?2, expires_ms = NULL WHERE id = ?1",
            params![id, remaining_ms.map(|v| v as i64)],
        )?;
        Ok(())
    }

    pub fn set_resumed(
        &self,
        id: &str,
        expires_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.db().execute(
            "UPDATE sandboxes SET state = 'running', remaining_ms = NULL, expires_ms = ?2, last_active_ms = ?3 WHERE id = ?1",
            params![id, expires_ms.map(|v| v as i64), now_ms as i64],
        )?;
        Ok(())
    }

    pub fn set_spec(&self, id: &str, spec: &serde_json::Value) -> Result<(), StoreError> {
        self.db().execute(
            "UPDATE sandboxes SET spec = ?2 WHERE id = ?1",
            params![id, spec.to_string()],
        )?;
        Ok(())
    }

    pub fn set_isolation(&self, id: &str, isolation: &serde_json::Value) -> Result<(), StoreError> {
        self.db().execute(
            "UPDATE sandboxes SET isolation = ?2 WHERE id = ?1",
            params![id, isolation.to_string()],
        )?;
        Ok(())
    }

    pub fn touch(&self, id: &str, now_ms: u64) -> Result<(), StoreError> {
        self.db()
            .prepare_cached("UPDATE sandboxes SET last_active_ms = ?2 WHERE id = ?1")?
            .execute(params![id, now_ms as i64])?;
        Ok(())
    }

    pub fn remove(&self, id: &str) -> Result<(), StoreError> {
        self.db()
            .execute("DELETE FROM sandboxes WHERE id = ?1", params![id])?;
        Ok(())
    }

    pub fn get(&self, id: &str) -> Result<Option<Row>, StoreError> {
        Ok(self
            .db()
            .prepare_cached(&format!("SELECT {COLUMNS} FROM sandboxes WHERE id = ?1"))?
            .query_row(params![id], row_of)
            .optional()?)
    }

    pub fn by_idempotency_key(&self, owner: &str, key: &str) -> Result<Option<Row>, StoreError> {
        Ok(self
            .db()
            .query_row(
                &format!(
                    "SELECT {COLUMNS} FROM sandboxes WHERE owner = ?1 AND idempotency_key = ?2"
                ),
                params![owner, key],
                row_of,
            )
            .optional()?)
    }

    /// Every sandbox (owner `None`) or one owner's, oldest first, after
    /// the cursor `after` (an id), at most `limit`.
    pub fn list(
        &self,
        owner: Option<&str>,
        after: Option<(u64, &str)>,
        limit: u64,
    ) -> Result<Vec<Row>, StoreError> {
        let db = self.db();
        let (after_ms, after_id) = after.unwrap_or((0, ""));
        let mut st = db.prepare(&format!(
            "SELECT {COLUMNS} FROM sandboxes
             WHERE (?1 IS NULL OR owner = ?1) AND (created_ms > ?2 OR (created_ms = ?2 AND id > ?3))
             ORDER BY created_ms, id LIMIT ?4"
        ))?;
        let v = st
            .query_map(
                params![owner, after_ms as i64, after_id, limit as i64],
                row_of,
            )?
            .collect::<Result<_, _>>()?;
        Ok(v)
    }

    pub fn all(&self) -> Result<Vec<Row>, StoreError> {
        self.list(None, None, i64::MAX as u64)
    }

    // ---- snapshots

    pub fn insert_snapshot(&self, s: &SnapshotRow) -> Result<(), StoreError> {
        self.db().execute(
            "INSERT INTO snapshots (id, owner, name, source, created_ms, meta) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![s.id, s.owner, s.name, s.source, s.created_ms as i64, s.meta.to_string()],
        )?;
        Ok(())
    }

    pub fn get_snapshot(&self, id: &str) -> Result<Option<SnapshotRow>, StoreError> {
        Ok(self
            .db()
            .query_row(
                "SELECT id, owner, name, source, created_ms, meta FROM snapshots WHERE id = ?1",
                params![id],
                snapshot_of,
            )
            .optional()?)
    }

    /// Every snapshot (owner `None`) or one owner's, oldest first.
    pub fn snapshots(&self, owner: Option<&str>) -> Result<Vec<SnapshotRow>, StoreError> {
        let db = self.db();
        let mut st = db.prepare(
            "SELECT id, owner, name, source, created_ms, meta FROM snapshots
             WHERE (?1 IS NULL OR owner = ?1) ORDER BY created_ms, id",
        )?;
        let v = st
            .query_map(params![owner], snapshot_of)?
            .collect::<Result<_, _>>()?;
        Ok(v)
    }

    pub fn remove_snapshot(&self, id: &str) -> Result<(), StoreError> {
        self.db()
            .execute("DELETE FROM snapshots WHERE id = ?1", params![id])?;
        Ok(())
    }

    // ---- volumes

    /// Record a volume; `Ok(false)` when its owner already has one of that
    /// name.
    pub fn insert_volume(&self, v: &VolumeRow) -> Result<bool, StoreError> {
        let n = self.db().execute(
            "INSERT OR IGNORE INTO volumes (id, owner, name, size_bytes, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![v.id, v.owner, v.name, v.size_bytes as i64, v.created_ms as i64],
        )?;
        Ok(n == 1)
    }

    pub fn get_volume(&self, id: &str) -> Result<Option<VolumeRow>, StoreError> {
        Ok(self
            .db()
            .query_row(
                "SELECT id, owner, name, size_bytes, created_ms FROM volumes WHERE id = ?1",
                params![id],
                volume_of,
            )
            .optional()?)
    }

    pub fn volume_by_name(&self, owner: &str, name: &str) -> Result<Option<VolumeRow>, StoreError> {
        Ok(self
            .db()
            .query_row(
                "SELECT id, owner, name, size_bytes, created_ms FROM volumes WHERE owner = ?1 AND name = ?2",
                params![owner, name],
                volume_of,
            )
            .optional()?)
    }

    /// Every volume (owner `None`) or one owner's, by name.
    pub fn volumes(&self, owner: Option<&str>) -> Result<Vec<VolumeRow>, StoreError> {
        let db = self.db();
        let mut st = db.prepare(
            "SELECT id, owner, name, size_bytes, created_ms FROM volumes
             WHERE (?1 IS NULL OR owner = ?1) ORDER BY name, id",
        )?;
        let v = st
            .query_map(params![owner], volume_of)?
            .collect::<Result<_, _>>()?;
        Ok(v)
    }

    pub fn remove_volume(&self, id: &str) -> Result<(), StoreError> {
        self.db()
            .execute("DELETE FROM volumes WHERE id = ?1", params![id])?;
        Ok(())
    }

    // ---- workspaces

    /// Record a workspace; `Ok(false)` when its owner has one of that name.
    pub fn insert_workspace(&self, w: &WorkspaceRow) -> Result<bool, StoreError> {
        let n = self.db().execute(
            "INSERT OR IGNORE INTO workspaces (id, owner, name, volume, env, labels, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                w.id,
                w.owner,
                w.name,
                w.volume,
                serde_json::to_string(&w.env).unwrap_or_default(),
                serde_json::to_string(&w.labels).unwrap_or_default(),
                w.created_ms as i64
            ],
        )?;
        Ok(n == 1)
    }

    pub fn get_workspace(&self, id: &str) -> Result<Option<WorkspaceRow>, StoreError> {
        Ok(self
            .db()
            .query_row(
                &format!("SELECT {WORKSPACE_COLUMNS} FROM workspaces WHERE id = ?1"),
                params![id],
                workspace_of,
            )
            .optional()?)
    }

    pub fn workspace_by_name(
        &self,
        owner: &str,
        name: &str,
    ) -> Result<Option<WorkspaceRow>, StoreError> {
        Ok(self
            .db()
            .query_row(
                &format!(
                    "SELECT {WORKSPACE_COLUMNS} FROM workspaces WHERE owner = ?1 AND name = ?2"
                ),
                params![owner, name],
                workspace_of,
            )
            .optional()?)
    }

    /// Every workspace (owner `None`) or one owner's, by name.
    pub fn workspaces(&self, owner: Option<&str>) -> Result<Vec<WorkspaceRow>, StoreError> {
        let db = self.db();
        let mut st = db.prepare(&format!(
            "SELECT {WORKSPACE_COLUMNS} FROM workspaces WHERE (?1 IS NULL OR owner = ?1) ORDER BY name, id"
        ))?;
        let v = st
            .query_map(params![owner], workspace_of)?
            .collect::<Result<_, _>>()?;
        Ok(v)
    }

    /// Forget a workspace and its history.
    pub fn remove_workspace(&self, id: &str) -> Result<(), StoreError> {
        let db = self.db();
        db.execute(
            "DELETE FROM workspace_events WHERE workspace = ?1",
            params![id],
        )?;
        db.execute("DELETE FROM workspaces WHERE id = ?1", params![id])?;
        Ok(())
    }

    pub fn add_workspace_event(
        &self,
        workspace: &str,
        e: &aibox_types::api::WorkspaceEvent,
    ) -> Result<(), StoreError> {
        let kind = serde_json::to_value(e.event)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        self.db().execute(
            "INSERT INTO workspace_events (workspace, at_ms, event, sandbox, snapshot, from_snapshot) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![workspace, e.at_ms as i64, kind, e.sandbox, e.snapshot, e.from_snapshot],
        )?;
        Ok(())
    }

    /// A workspace's history, oldest first.
    pub fn workspace_events(
        &self,
        workspace: &str,
    ) -> Result<Vec<aibox_types::api::WorkspaceEvent>, StoreError> {
        let db = self.db();
        let mut st = db.prepare(
            "SELECT at_ms, event, sandbox, snapshot, from_snapshot FROM workspace_events WHERE workspace = ?1 ORDER BY seq",
        )?;
        let v = st
            .query_map(params![workspace], |r| {
                let kind: String = r.get(1)?;
                Ok(aibox_types::api::WorkspaceEvent {
                    at_ms: r.get::<_, i64>(0)? as u64,
                    event: serde_json::from_value(serde_json::Value::String(kind))
                        .unwrap_or(aibox_types::api::WorkspaceEventKind::Created),
                    sandbox: r.get(2)?,
                    snapshot: r.get(3)?,
                    from_snapshot: r.get(4)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(v)
    }

    // ---- audit

    /// Append an event; each entry's hash covers the previous one's, so
    /// editing or deleting an entry breaks the chain at that point.
    pub fn audit(
        &self,
        now_ms: u64,
        actor: &str,
        action: &str,
        sandbox: Option<&str>,
        detail: &serde_json::Value,
    ) -> Result<(), StoreError> {
        self.audit_batch(&[AuditEvent {
            at_ms: now_ms,
            actor: actor.to_string(),
            action: action.to_string(),
            sandbox: sandbox.map(str::to_string),
            detail: detail.clone(),
        }])
    }

    /// Append events to the hash chain, in order, in one transaction.
    pub fn audit_batch(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        {
            let last: Option<(i64, String)> = tx
                .prepare_cached("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")?
                .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let (mut seq, mut prev) = match last {
                Some((s, h)) => (s + 1, h),
                None => (1, "0".repeat(64)),
            };
            let mut insert = tx.prepare_cached(
                "INSERT INTO audit (seq, at_ms, actor, action, sandbox, detail, prev, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for e in events {
                let detail = e.detail.to_string();
                let sandbox = e.sandbox.as_deref();
                let hash = audit_hash(seq, e.at_ms, &e.actor, &e.action, sandbox, &detail, &prev);
                insert.execute(params![
                    seq,
                    e.at_ms as i64,
                    e.actor,
                    e.action,
                    sandbox,
                    detail,
                    prev,
                    hash
                ])?;
                prev = hash;
                seq += 1;
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub fn audit_entries(&self, after_seq: u64, limit: u64) -> Result<Vec<AuditEntry>, StoreError> {
        let db = self.db();
        let mut st = db.prepare(
            "SELECT seq, at_ms, actor, action, sandbox, detail, prev, hash FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let v = st
            .query_map(params![after_seq as i64, limit as i64], audit_row)?
            .collect::<Result<_, _>>()?;
        Ok(v)
    }

    /// Entries matching a filter, newest first, older than `before` (a
    /// sequence number) when given.
    pub fn audit_search(&self, f: &AuditFilter, limit: u64) -> Result<Vec<AuditEntry>, StoreError> {
        let mut sql = String::from(
            "SELECT seq, at_ms, actor, action, sandbox, detail, prev, hash FROM audit WHERE 1=1",
        );
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        // Each condition's `?` becomes its numbered parameter.
        let mut add = |cond: &str, v: rusqlite::types::Value| {
            args.push(v);
            sql.push_str(" AND ");
            sql.push_str(&cond.replace('?', &format!("?{}", args.len())));
        };
        if let Some(b) = f.before {
            add("seq < ?", (b as i64).into());
        }
        if let Some(a) = &f.actor {
            add("actor = ?", a.clone().into());
        }
        if let Some(a) = &f.action {
            // A prefix: `sandbox.` finds every sandbox event.
            add("instr(action, ?) = 1", a.clone().into());
        }
        if let Some(id) = &f.sandbox {
            add("sandbox = ?", id.clone().into());
        }
        if let Some(t) = f.since_ms {
            add("at_ms >= ?", (t as i64).into());
        }
        if let Some(t) = f.until_ms {
            add("at_ms < ?", (t as i64).into());
        }
        args.push((limit as i64).into());
        sql.push_str(&format!(" ORDER BY seq DESC LIMIT ?{}", args.len()));
        let db = self.db();
        let mut st = db.prepare(&sql)?;
        let v = st
            .query_map(rusqlite::params_from_iter(args), audit_row)?
            .collect::<Result<_, _>>()?;
        Ok(v)
    }

    pub fn audit_count(&self) -> Result<u64, StoreError> {
        Ok(self
            .db()
            .query_row("SELECT COUNT(*) FROM audit", [], |r| r.get::<_, i64>(0))? as u64)
    }

    /// Walk the chain; the first broken link's sequence number, if any.
    pub fn audit_verify(&self) -> Result<Option<u64>, StoreError> {
        let mut prev = "0".repeat(64);
        let mut after = 0;
        loop {
            let batch = self.audit_entries(after, 1000)?;
            if batch.is_empty() {
                return Ok(None);
            }
            for e in &batch {
                let detail = e.detail.to_string();
                let want = audit_hash(
                    e.seq as i64,
                    e.at_ms,
                    &e.actor,
                    &e.action,
                    e.sandbox.as_deref(),
                    &detail,
                    &prev,
                );
                if e.prev != prev || e.hash != want || e.seq != after + 1 {
                    return Ok(Some(e.seq));
                }
                prev = e.hash.clone();
                after = e.seq;
            }
        }
    }
}

fn key_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<KeyInfo> {
    Ok(KeyInfo {
        id: r.get(0)?,
        name: r.get(1)?,
        scope: parse_scope(&r.get::<_, String>(2)?),
        created_ms: r.get::<_, i64>(3)? as u64,
        revoked_ms: r.get::<_, Option<i64>>(4)?.map(|v| v as u64),
        max_sandboxes: r.get::<_, Option<i64>>(5)?.map(|v| v as u64),
        max_memory: r.get::<_, Option<i64>>(6)?.map(|v| v as u64),
        // A ceiling that no longer parses is kept as the tightest one
        // (nothing beyond the server's limits, no local egress, no mounts,
        // no backend), never as none.
        ceiling: r.get::<_, Option<String>>(7)?.map(|t| {
            serde_json::from_str(&t).unwrap_or_else(|_| aibox_types::ceiling::Ceiling {
                mounts: Some(vec![]),
                backends: Some(vec![]),
                public_ports: Some(false),
                ..Default::default()
            })
        }),
    })
}

/// An event to append to the audit log.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub at_ms: u64,
    pub actor: String,
    pub action: String,
    pub sandbox: Option<String>,
    pub detail: serde_json::Value,
}

/// What `GET /v1/audit` can select on.
#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    pub before: Option<u64>,
    pub actor: Option<String>,
    /// A prefix of the action.
    pub action: Option<String>,
    pub sandbox: Option<String>,
    pub since_ms: Option<u64>,
    pub until_ms: Option<u64>,
}

fn audit_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditEntry> {
    let detail: String = r.get(5)?;
    Ok(AuditEntry {
        seq: r.get::<_, i64>(0)? as u64,
        at_ms: r.get::<_, i64>(1)? as u64,
        actor: r.get(2)?,
        action: r.get(3)?,
        sandbox: r.get(4)?,
        detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
        prev: r.get(6)?,
        hash: r.get(7)?,
    })
}

fn audit_hash(
    seq: i64,
    at_ms: u64,
    actor: &str,
    action: &str,
    sandbox: Option<&str>,
    detail: &str,
    prev: &str,
) -> String {
    // Length-prefixed fields: no two different entries serialize alike.
    let mut buf = Vec::new();
    for f in [
        seq.to_string().as_str(),
        at_ms.to_string().as_str(),
        actor,
        action,
        sandbox.unwrap_or(""),
        detail,
        prev,
    ] {
        buf.extend_from_slice(&(f.len() as u64).to_le_bytes());
        buf.extend_from_slice(f.as_bytes());
    }
    sha256_hex(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stored_hashed_and_revocable() {
        let s = Store::in_memory().unwrap();
        s.add_key("k1", "admin", "secret-1", Scope::Admin, 1)
            .unwrap();
        let dump: String = s
            .db()
            .query_row("SELECT hash FROM api_keys", [], |r| r.get(0))
            .unwrap();
        assert!(!dump.contains("secret-1"));
        assert_eq!(s.find_key("secret-1").unwrap().unwrap().scope, Scope::Admin);
        assert!(s.find_key("secret-2").unwrap().is_none());
        assert!(s.revoke_key("k1", 2).unwrap());
        assert!(!s.revoke_key("k1", 3).unwrap());
        assert!(s.find_key("secret-1").unwrap().is_none());
    }

    #[test]
    fn audit_chain_detects_edits_and_deletions() {
        let s = Store::in_memory().unwrap();
        for i in 0..5 {
            s.audit(
                i,
                "k1",
                "sandbox.create",
                Some("ab"),
                &serde_json::json!({"i": i}),
            )
            .unwrap();
        }
        assert_eq!(s.audit_verify().unwrap(), None);
        s.db()
            .execute("UPDATE audit SET actor = 'k2' WHERE seq = 3", [])
            .unwrap();
        assert_eq!(s.audit_verify().unwrap(), Some(3));
        s.db()
            .execute("UPDATE audit SET actor = 'k1' WHERE seq = 3", [])
            .unwrap();
        assert_eq!(s.audit_verify().unwrap(), None);
        s.db()
            .execute("DELETE FROM audit WHERE seq = 2", [])
            .unwrap();
        assert_eq!(s.audit_verify().unwrap(), Some(3));
    }

    #[test]
    fn a_database_from_before_published_ports_is_migrated() {
        let dir = std::env::temp_dir().join(format!("aibox-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.db");
        {
            let db = Connection::open(&path).unwrap();
            db.execute_batch(
                "CREATE TABLE sandboxes (id TEXT PRIMARY KEY, owner TEXT NOT NULL, state TEXT NOT NULL,
                 spec TEXT NOT NULL, labels TEXT NOT NULL, isolation TEXT NOT NULL,
                 created_ms BIGINT NOT NULL, expires_ms BIGINT, idempotency_key TEXT,
                 idle_timeout_ms BIGINT, last_active_ms BIGINT NOT NULL DEFAULT 0,
                 remaining_ms BIGINT, UNIQUE (owner, idempotency_key));
                 INSERT INTO sandboxes (id, owner, state, spec, labels, isolation, created_ms)
                 VALUES ('a', 'admin', 'running', '{}', '{}', 'null', 1);",
            )
            .unwrap();
        }
        let s = Store::open(&path).unwrap();
        let r = s.get("a").unwrap().unwrap();
        assert_eq!(r.port_token.len(), 32, "{:?}", r.port_token);
        assert!(!r.public_ports);
        drop(s);
        // Opening again changes nothing.
        let s = Store::open(&path).unwrap();
        assert_eq!(s.get("a").unwrap().unwrap().port_token, r.port_token);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn list_pages_by_creation_then_id() {
        let s = Store::in_memory().unwrap();
        for (id, ms, owner) in [("a", 1, "x"), ("b", 1, "y"), ("c", 2, "x"), ("d", 3, "x")] {
            s.insert(&Row {
                id: id.into(),
                owner: owner.into(),
                state: "running".into(),
                spec: serde_json::json!({}),
                labels: serde_json::Map::new(),
                isolation: serde_json::Value::Null,
                created_ms: ms,
                expires_ms: None,
                idempotency_key: None,
                idle_timeout_ms: None,
                last_active_ms: 0,
                remaining_ms: None,
                port_token: String::new(),
                public_ports: false,
            })
            .unwrap();
        }
        let p1 = s.list(Some("x"), None, 2).unwrap();
        assert_eq!(
            p1.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["a", "c"]
        );
        let p2 = s.list(Some("x"), Some((2, "c")), 2).unwrap();
        assert_eq!(p2.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["d"]);
        assert_eq!(s.list(None, None, 10).unwrap().len(), 4);
    }
}
