//! Interoperable image import: `glance-direct` (after staging), `web-download`, `copy-image`, and the
//! tasks that report on them.

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Glance;
use super::images::ImageId;
use crate::error::{Error, Result};
use crate::session::ApiRequest;

/// An import method with its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImportMethod {
    /// Import data staged with [`Glance::stage`].
    GlanceDirect {
        /// Target stores (all when empty and `all_stores`, default store otherwise).
        stores: Vec<String>,
    },
    /// Glance downloads the data from a URL itself.
    WebDownload {
        /// The URL.
        uri: String,
        /// Target stores.
        stores: Vec<String>,
    },
    /// Copy an active image's data into more stores.
    CopyImage {
        /// Target stores.
        stores: Vec<String>,
        /// Whether all stores must succeed.
        all_stores_must_succeed: bool,
    },
}

impl ImportMethod {
    /// `glance-direct` into the default store.
    pub fn glance_direct() -> Self {
        ImportMethod::GlanceDirect { stores: vec![] }
    }
    /// `web-download` from `uri` into the default store.
    pub fn web_download(uri: impl Into<String>) -> Self {
        ImportMethod::WebDownload {
            uri: uri.into(),
            stores: vec![],
        }
    }
    /// `copy-image` into `stores`.
    pub fn copy_image(stores: impl IntoIterator<Item = impl Into<String>>) -> Self {
        ImportMethod::CopyImage {
            stores: stores.into_iter().map(Into::into).collect(),
            all_stores_must_succeed: true,
        }
    }

    /// The request body of `POST /v2/images/{id}/import`.
    pub fn to_json(&self) -> Value {
        let with_stores = |mut body: Value, stores: &[String]| {
            if !stores.is_empty() {
                body["stores"] = json!(stores);
            }
            body
        };
        match self {
            ImportMethod::GlanceDirect { stores } => with_stores(json!({"method": {"name": "glance-direct"}}), stores),
            ImportMethod::WebDownload { uri, stores } => {
                with_stores(json!({"method": {"name": "web-download", "uri": uri}}), stores)
            }
            ImportMethod::CopyImage {
                stores,
                all_stores_must_succeed,
            } => json!({
                "method": {"name": "copy-image"},
                "stores": stores,
                "all_stores": false,
                "all_stores_must_succeed": all_stores_must_succeed,
            }),
        }
    }
}

/// An asynchronous Glance task (an import).
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct ImageTask {
    /// Task id.
    pub id: String,
    /// `api_image_import`.
    #[serde(rename = "type", default)]
    pub task_type: Option<String>,
    /// `pending`, `processing`, `success`, `failure`.
    pub status: String,
    /// Why it failed, when it did.
    #[serde(default)]
    pub message: Option<String>,
    /// Creation time.
    #[serde(default)]
    pub created_at: Option<String>,
    /// Last update.
    #[serde(default)]
    pub updated_at: Option<String>,
}

#[derive(Deserialize)]
struct Tasks {
    tasks: Vec<ImageTask>,
}

impl Glance {
    /// The import methods this Glance enables (`GET /v2/info/import`).
    pub async fn import_methods(&self) -> Result<Vec<String>> {
        let v: Value = self
            .session
            .send_json(ApiRequest::new(Method::GET, self.url("info/import").await?))
            .await?;
        let methods = v
            .pointer("/import-methods/value")
            .and_then(Value::as_array)
            .ok_or_else(|| Error::Decode {
                method: "GET".into(),
                url: "info/import".into(),
                reason: "no import-methods.value list".into(),
            })?;
        Ok(methods.iter().filter_map(Value::as_str).map(str::to_string).collect())
    }

    /// Start an import (`POST /v2/images/{id}/import`, 202). Follow it with
    /// [`Glance::wait_for_status`], which fails at once when the import fails.
    pub async fn import(&self, id: &ImageId, method: &ImportMethod) -> Result<()> {
        let url = self.url(&format!("images/{id}/import")).await?;
        self.session
            .send(ApiRequest::new(Method::POST, url).json(method.to_json()))
            .await
            .map(drop)
    }

    /// The tasks of an image (`GET /v2/images/{id}/tasks`, API 2.12+), newest last.
    pub async fn tasks(&self, id: &ImageId) -> Result<Vec<ImageTask>> {
        let url = self.url(&format!("images/{id}/tasks")).await?;
        let t: Tasks = self.session.send_json(ApiRequest::new(Method::GET, url).page()).await?;
        Ok(t.tasks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_bodies_match_the_api_reference() {
        let cmp = |file: &str, m: ImportMethod, keys: &[&str]| {
            let want: Value = serde_json::from_str(file).unwrap();
            let got = m.to_json();
            for k in keys {
                assert_eq!(got.pointer(k), want.pointer(k), "{k}");
            }
        };
        cmp(
            include_str!("../../tests/fixtures/glance/image-import-w-d-request.json"),
            ImportMethod::web_download("https://download.cirros-cloud.net/0.4.0/cirros-0.4.0-ppc64le-disk.img"),
            &["/method"],
        );
        cmp(
            include_str!("../../tests/fixtures/glance/image-import-c-i-request.json"),
            ImportMethod::CopyImage {
                stores: vec!["common".into(), "cheap".into(), "fast".into(), "reliable".into()],
                all_stores_must_succeed: false,
            },
            &["/method", "/stores", "/all_stores", "/all_stores_must_succeed"],
        );
        cmp(
            include_str!("../../tests/fixtures/glance/image-import-g-d-request.json"),
            ImportMethod::GlanceDirect {
                stores: vec!["common".into(), "cheap".into(), "fast".into(), "reliable".into()],
            },
            &["/method", "/stores"],
        );
    }
}
