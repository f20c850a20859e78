//! The AWS Glue Data Catalog behind the [`Catalog`] port. The endpoint comes from the SDK's own
//! chain (`AWS_ENDPOINT_URL`), like every other AWS adapter.

use super::sdk_error;
use crate::error::StoreError;
use crate::ports::{Catalog, CatalogColumn, CatalogPartition, CatalogTable, StorageDescriptor};
use async_trait::async_trait;
use aws_sdk_glue::types as g;

#[derive(Debug, Clone)]
pub struct GlueCatalog {
    client: aws_sdk_glue::Client,
}

impl GlueCatalog {
    pub fn new(client: aws_sdk_glue::Client) -> Self {
        GlueCatalog { client }
    }
}

fn build_err(what: &str, e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::backend(format!("build Glue {what}"), e)
}

fn columns(cols: &[CatalogColumn]) -> Result<Vec<g::Column>, StoreError> {
    cols.iter()
        .map(|c| {
            g::Column::builder()
                .name(&c.name)
                .r#type(&c.data_type)
                .build()
                .map_err(|e| build_err("column", e))
        })
        .collect()
}

fn descriptor(
    s: &StorageDescriptor,
    cols: &[CatalogColumn],
    location: &str,
) -> Result<g::StorageDescriptor, StoreError> {
    let mut serde = g::SerDeInfo::builder().serialization_library(&s.serde_library);
    for (k, v) in &s.serde_parameters {
        serde = serde.parameters(k, v);
    }
    Ok(g::StorageDescriptor::builder()
        .set_columns(Some(columns(cols)?))
        .location(location)
        .input_format(&s.input_format)
        .output_format(&s.output_format)
        .compressed(s.compressed)
        .serde_info(serde.build())
        .build())
}

fn table_input(t: &CatalogTable) -> Result<g::TableInput, StoreError> {
    let mut b = g::TableInput::builder()
        .name(&t.name)
        .table_type("EXTERNAL_TABLE")
        .storage_descriptor(descriptor(&t.storage, &t.columns, &t.storage.location)?)
        .set_partition_keys(Some(columns(&t.partition_keys)?));
    for (k, v) in &t.parameters {
        b = b.parameters(k, v);
    }
    b.build().map_err(|e| build_err("table input", e))
}

fn column_of(c: &g::Column) -> CatalogColumn {
    CatalogColumn {
        name: c.name().to_string(),
        data_type: c.r#type().unwrap_or("string").to_string(),
    }
}

#[async_trait]
impl Catalog for GlueCatalog {
    async fn database_exists(&self, database: &str) -> Result<bool, StoreError> {
        match self.client.get_database().name(database).send().await {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_entity_not_found_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(sdk_error(format!("glue:GetDatabase {database}"), e)),
        }
    }

    async fn create_database(&self, database: &str) -> Result<(), StoreError> {
        let input = g::DatabaseInput::builder()
            .name(database)
            .description("ferry flows' output tables")
            .build()
            .map_err(|e| build_err("database input", e))?;
        match self
            .client
            .create_database()
            .database_input(input)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_already_exists_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(sdk_error(format!("glue:CreateDatabase {database}"), e)),
        }
    }

    async fn get_table(
        &self,
        database: &str,
        table: &str,
    ) -> Result<Option<CatalogTable>, StoreError> {
        let out = match self
            .client
            .get_table()
            .database_name(database)
            .name(table)
            .send()
            .await
        {
            Ok(o) => o,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_entity_not_found_exception()) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(sdk_error(format!("glue:GetTable {database}.{table}"), e)),
        };
        let Some(t) = out.table() else {
            return Ok(None);
        };
        let sd = t.storage_descriptor();
        let serde = sd.and_then(|s| s.serde_info());
        Ok(Some(CatalogTable {
            database: database.to_string(),
            name: t.name().to_string(),
            columns: sd
                .map(|s| s.columns().iter().map(column_of).collect())
                .unwrap_or_default(),
            partition_keys: t.partition_keys().iter().map(column_of).collect(),
            storage: StorageDescriptor {
                location: sd
                    .and_then(|s| s.location())
                    .unwrap_or_default()
                    .to_string(),
                input_format: sd
                    .and_then(|s| s.input_format())
                    .unwrap_or_default()
                    .to_string(),
                output_format: sd
                    .and_then(|s| s.output_format())
                    .unwrap_or_default()
                    .to_string(),
                serde_library: serde
                    .and_then(|s| s.serialization_library())
                    .unwrap_or_default()
                    .to_string(),
                serde_parameters: serde
                    .and_then(|s| s.parameters())
                    .map(|p| p.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default(),
                compressed: sd.is_some_and(|s| s.compressed()),
            },
            parameters: t
                .parameters()
                .map(|p| p.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
        }))
    }

    async fn put_table(&self, table: &CatalogTable) -> Result<(), StoreError> {
        let input = table_input(table)?;
        let what = format!("{}.{}", table.database, table.name);
        let created = self
            .client
            .create_table()
            .database_name(&table.database)
            .table_input(input.clone())
            .send()
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_already_exists_exception()) =>
            {
                self.client
                    .update_table()
                    .database_name(&table.database)
                    .table_input(input)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| sdk_error(format!("glue:UpdateTable {what}"), e))
            }
            Err(e) => Err(sdk_error(format!("glue:CreateTable {what}"), e)),
        }
    }

    async fn add_partitions(
        &self,
        database: &str,
        table: &str,
        partitions: &[CatalogPartition],
        storage: &StorageDescriptor,
        columns: &[CatalogColumn],
    ) -> Result<(), StoreError> {
        // BatchCreatePartition takes at most 100 partitions per call.
        for batch in partitions.chunks(100) {
            let inputs = batch
                .iter()
                .map(|p| {
                    Ok(g::PartitionInput::builder()
                        .set_values(Some(p.values.clone()))
                        .storage_descriptor(descriptor(storage, columns, &p.location)?)
                        .build())
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            let out = self
                .client
                .batch_create_partition()
                .database_name(database)
                .table_name(table)
                .set_partition_input_list(Some(inputs))
                .send()
                .await
                .map_err(|e| {
                    sdk_error(format!("glue:BatchCreatePartition {database}.{table}"), e)
                })?;
            // A partition that exists already (a retry, a resync) is what we want.
            let failed: Vec<String> = out
                .errors()
                .iter()
                .filter(|e| {
                    e.error_detail().and_then(|d| d.error_code()) != Some("AlreadyExistsException")
                })
                .map(|e| {
                    format!(
                        "{:?}: {}",
                        e.partition_values(),
                        e.error_detail()
                            .map(|d| format!(
                                "{} {}",
                                d.error_code().unwrap_or_default(),
                                d.error_message().unwrap_or_default()
                            ))
                            .unwrap_or_default()
                    )
                })
                .collect();
            if !failed.is_empty() {
                return Err(StoreError::Invalid(format!(
                    "glue:BatchCreatePartition {database}.{table} refused partitions: {}",
                    failed.join("; ")
                )));
            }
        }
        Ok(())
    }

    async fn list_partitions(
        &self,
        database: &str,
        table: &str,
    ) -> Result<Vec<CatalogPartition>, StoreError> {
        let mut out = vec![];
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .get_partitions()
                .database_name(database)
                .table_name(table)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| sdk_error(format!("glue:GetPartitions {database}.{table}"), e))?;
            for p in page.partitions() {
                out.push(CatalogPartition {
                    values: p.values().to_vec(),
                    location: p
                        .storage_descriptor()
                        .and_then(|s| s.location())
                        .unwrap_or_default()
                        .to_string(),
                });
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        out.sort();
        Ok(out)
    }
}
