//! The embedded data catalog: one JSON file per table, `<root>/<database>/<table>.json`
//! (`$FERRY_HOME/catalog/...`), holding the same table and partition model as Glue.

use crate::error::StoreError;
use crate::ports::{Catalog, CatalogColumn, CatalogPartition, CatalogTable, StorageDescriptor};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct CatalogFile {
    root: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TableFile {
    table: CatalogTable,
    #[serde(default)]
    partitions: Vec<CatalogPartition>,
}

impl CatalogFile {
    pub fn new(root: PathBuf) -> Self {
        CatalogFile { root }
    }

    fn path(&self, database: &str, table: &str) -> PathBuf {
        self.root.join(database).join(format!("{table}.json"))
    }

    fn read(&self, database: &str, table: &str) -> Result<Option<TableFile>, StoreError> {
        let p = self.path(database, table);
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
                StoreError::Invalid(format!(
                    "catalog file {} is not valid: {e}; delete it and run `ferry catalog sync`",
                    p.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::backend(format!("read {}", p.display()), e)),
        }
    }

    fn write(&self, f: &TableFile) -> Result<(), StoreError> {
        let p = self.path(&f.table.database, &f.table.name);
        let body =
            serde_json::to_vec_pretty(f).map_err(|e| StoreError::backend("encode catalog", e))?;
        // Write then rename: a reader never sees half a file.
        let tmp = p.with_extension("json.tmp");
        std::fs::write(&tmp, body)
            .and_then(|_| std::fs::rename(&tmp, &p))
            .map_err(|e| StoreError::backend(format!("write {}", p.display()), e))
    }
}

#[async_trait]
impl Catalog for CatalogFile {
    async fn database_exists(&self, database: &str) -> Result<bool, StoreError> {
        Ok(self.root.join(database).is_dir())
    }

    async fn create_database(&self, database: &str) -> Result<(), StoreError> {
        let d = self.root.join(database);
        std::fs::create_dir_all(&d)
            .map_err(|e| StoreError::backend(format!("create {}", d.display()), e))
    }

    async fn get_table(
        &self,
        database: &str,
        table: &str,
    ) -> Result<Option<CatalogTable>, StoreError> {
        Ok(self.read(database, table)?.map(|f| f.table))
    }

    async fn put_table(&self, table: &CatalogTable) -> Result<(), StoreError> {
        let partitions = self
            .read(&table.database, &table.name)?
            .map(|f| f.partitions)
            .unwrap_or_default();
        self.write(&TableFile {
            table: table.clone(),
            partitions,
        })
    }

    async fn add_partitions(
        &self,
        database: &str,
        table: &str,
        partitions: &[CatalogPartition],
        _storage: &StorageDescriptor,
        _columns: &[CatalogColumn],
    ) -> Result<(), StoreError> {
        let mut f = self
            .read(database, table)?
            .ok_or_else(|| StoreError::NotFound(format!("catalog table {database}.{table}")))?;
        for p in partitions {
            if !f.partitions.iter().any(|q| q.values == p.values) {
                f.partitions.push(p.clone());
            }
        }
        f.partitions.sort();
        self.write(&f)
    }

    async fn list_partitions(
        &self,
        database: &str,
        table: &str,
    ) -> Result<Vec<CatalogPartition>, StoreError> {
        Ok(self
            .read(database, table)?
            .map(|f| f.partitions)
            .unwrap_or_default())
    }
}
