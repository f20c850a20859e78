//! Secrets Manager secret store: one secret per connector profile, named
//! `<prefix><profile>` (default prefix `ferry/profiles/`), holding a JSON object. Refreshed
//! OAuth tokens are written back with PutSecretValue; the secret is created when missing.
//! Values travel as [`Secret`], which never prints them; errors name the secret, never its value.

use crate::error::StoreError;
use crate::ports::{Secret, SecretStore};
use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;

/// The tag key that binds a profile's secret to a stack (the roles' condition key is
/// `aws:ResourceTag/ferry:stack`).
pub const STACK_TAG: &str = "ferry:stack";

/// The label of a written-back version until it becomes `AWSCURRENT`.
const PENDING_STAGE: &str = "ferry-pending";

pub struct SecretsManagerStore {
    client: Client,
    prefix: String,
    kms_key_id: Option<String>,
    stack: Option<String>,
}

impl SecretsManagerStore {
    pub fn new(client: Client, prefix: impl Into<String>) -> Self {
        SecretsManagerStore {
            client,
            prefix: prefix.into(),
            kms_key_id: None,
            stack: None,
        }
    }
    /// A store with a client from the SDK configuration.
    pub fn from_config(conf: &aws_config::SdkConfig, prefix: impl Into<String>) -> Self {
        Self::new(Client::new(conf), prefix)
    }
    /// Encrypt secrets this store creates with this KMS key (the account default otherwise).
    pub fn with_kms_key(mut self, key: Option<String>) -> Self {
        self.kms_key_id = key;
        self
    }
    /// Tag secrets this store creates `ferry:stack=<stack>`: the functions' roles read only
    /// secrets with their stack's tag (docs/security.md).
    pub fn with_stack_tag(mut self, stack: Option<String>) -> Self {
        self.stack = stack;
        self
    }
    /// The secret that holds a profile.
    pub fn secret_name(&self, profile: &str) -> String {
        format!("{}{profile}", self.prefix)
    }
}

#[async_trait]
impl SecretStore for SecretsManagerStore {
    async fn get_secret(&self, profile: &str) -> Result<Option<Secret>, StoreError> {
        Ok(self.get_secret_versioned(profile).await?.map(|(s, _)| s))
    }

    /// The version is the `VersionId` that holds `AWSCURRENT`.
    async fn get_secret_versioned(
        &self,
        profile: &str,
    ) -> Result<Option<(Secret, String)>, StoreError> {
        let name = self.secret_name(profile);
        // AWSCURRENT explicitly (the documented default): the version write-backs move.
        let out = match self
            .client
            .get_secret_value()
            .secret_id(&name)
            .version_stage("AWSCURRENT")
            .send()
            .await
        {
            Ok(o) => o,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_resource_not_found_exception()) =>
            {
                return Ok(None)
            }
            Err(e) => {
                return Err(super::sdk_error(
                    format!("secretsmanager GetSecretValue {name}"),
                    e,
                ))
            }
        };
        let Some(text) = out.secret_string else {
            return Err(StoreError::Invalid(format!(
                "secret '{name}' of profile '{profile}' holds binary data; store the profile as a JSON object string (SecretString)"
            )));
        };
        // Never echo the text: serde_json's error names only a line and column.
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            StoreError::Invalid(format!(
                "secret '{name}' of profile '{profile}' is not JSON (line {}, column {}); store a JSON object such as {{\"auth_type\": \"oauth2\", ...}}",
                e.line(),
                e.column()
            ))
        })?;
        if !value.is_object() {
            return Err(StoreError::Invalid(format!(
                "secret '{name}' of profile '{profile}' is JSON but not an object; store a JSON object such as {{\"auth_type\": \"oauth2\", ...}}"
            )));
        }
        let version = out.version_id.unwrap_or_default();
        Ok(Some((Secret::new(value), version)))
    }

    /// Compare-and-swap with version stages (Secrets Manager has no conditional put): the new
    /// value is stored as a version labelled `ferry-pending`, then `AWSCURRENT` is moved to it
    /// from `version`, which Secrets Manager refuses when `AWSCURRENT` is no longer there
    /// (another run wrote first). The losing version keeps only the pending label and is
    /// cleaned up by Secrets Manager like any version without `AWSCURRENT`/`AWSPREVIOUS`.
    async fn put_secret_if(
        &self,
        profile: &str,
        secret: &Secret,
        version: &str,
    ) -> Result<bool, StoreError> {
        let name = self.secret_name(profile);
        let put = self
            .client
            .put_secret_value()
            .secret_id(&name)
            .secret_string(secret.expose().to_string())
            .version_stages(PENDING_STAGE)
            .send()
            .await
            .map_err(|e| super::sdk_error(format!("secretsmanager PutSecretValue {name}"), e))?;
        let new_version = put.version_id.unwrap_or_default();
        match self
            .client
            .update_secret_version_stage()
            .secret_id(&name)
            .version_stage("AWSCURRENT")
            .move_to_version_id(&new_version)
            .remove_from_version_id(version)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_invalid_parameter_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(super::sdk_error(
                format!("secretsmanager UpdateSecretVersionStage {name}"),
                e,
            )),
        }
    }

    async fn put_secret(&self, profile: &str, secret: &Secret) -> Result<(), StoreError> {
        let name = self.secret_name(profile);
        let text = secret.expose().to_string();
        match self
            .client
            .put_secret_value()
            .secret_id(&name)
            .secret_string(&text)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_resource_not_found_exception()) =>
            {
                self.client
                    .create_secret()
                    .name(&name)
                    .description(format!("ferry connector profile '{profile}'"))
                    .set_kms_key_id(self.kms_key_id.clone())
                    .set_tags(self.stack.as_ref().map(|s| {
                        vec![aws_sdk_secretsmanager::types::Tag::builder()
                            .key(STACK_TAG)
                            .value(s)
                            .build()]
                    }))
                    .secret_string(text)
                    .send()
                    .await
                    .map_err(|e| {
                        super::sdk_error(format!("secretsmanager CreateSecret {name}"), e)
                    })?;
                Ok(())
            }
            Err(e) => Err(super::sdk_error(
                format!("secretsmanager PutSecretValue {name}"),
                e,
            )),
        }
    }
}
