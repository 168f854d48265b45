//! Object stores for the scheduler's and executors' sessions: built on first
//! use for any URL the job's plans name (`file://`, `s3://`, `gs://`, `az://`
//! ...), with the process's `[storage.*]` settings over the environment, the
//! same way the job opens its locations. Credentials come from the environment
//! or workload identity only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use datafusion::error::{DataFusionError, Result};
use datafusion::execution::object_store::ObjectStoreRegistry;
use object_store::ObjectStore;
use url::Url;

use crate::storage::{Location, StorageOptions};

#[derive(Debug, Default)]
pub struct StoreRegistry {
    options: StorageOptions,
    stores: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl StoreRegistry {
    pub fn new(options: StorageOptions) -> StoreRegistry {
        StoreRegistry { options, stores: Mutex::default() }
    }
}

/// One store per scheme, host and port (as DataFusion keys them).
fn key(url: &Url) -> String {
    format!(
        "{}://{}{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port().map(|p| format!(":{p}")).unwrap_or_default()
    )
}

impl ObjectStoreRegistry for StoreRegistry {
    fn register_store(&self, url: &Url, store: Arc<dyn ObjectStore>) -> Option<Arc<dyn ObjectStore>> {
        self.stores.lock().expect("store registry lock").insert(key(url), store)
    }

    fn deregister_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        self.stores
            .lock()
            .expect("store registry lock")
            .remove(&key(url))
            .ok_or_else(|| DataFusionError::Execution(format!("no object store registered for {url}")))
    }

    fn get_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        let key = key(url);
        let mut stores = self.stores.lock().expect("store registry lock");
        if let Some(store) = stores.get(&key) {
            return Ok(Arc::clone(store));
        }
        let store: Arc<dyn ObjectStore> = if url.scheme() == "file" {
            Arc::new(object_store::local::LocalFileSystem::new())
        } else {
            let root = Location::parse_with(&format!("{key}/"), &self.options)
                .map_err(|e| DataFusionError::Execution(format!("object store for {url}: {e}")))?;
            Arc::clone(root.store())
        };
        stores.insert(key, Arc::clone(&store));
        Ok(store)
    }
}
