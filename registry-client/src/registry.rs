//! The distribution API on [`Client`]: manifests, blobs, uploads (streamed, chunked, mounted),
//! tags with `Link` pagination, promote, inspect and delete.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::{StreamExt as _, TryStreamExt as _};
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderMap, HeaderValue, LOCATION};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use crate::auth::Scope;
use crate::blob::{BlobStream, Verified, recorded_or};
use crate::client::{Call, Client, MANIFEST_BODY, TAG_LIST_BODY, read_body};
use crate::error::{Error, Result};
use crate::manifest::{ACCEPT as MANIFEST_ACCEPT, Descriptor, Manifest, Parsed, platform_string};
use crate::reference::Reference;

/// How a blob got to the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BlobOutcome {
    /// It was there already.
    Existed,
    /// Mounted from another repository of the same registry, without moving bytes.
    Mounted,
    /// Uploaded.
    Uploaded,
}

/// The start of an upload: the blob got mounted, or here is the session to upload into.
pub(crate) enum UploadStart {
    Mounted,
    Session(String),
}

/// What [`Client::inspect`] reports about an image.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ImageInfo {
    /// The reference inspected.
    pub reference: String,
    /// Digest of the manifest or index.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// One entry per platform (one for a single-platform image).
    pub platforms: Vec<PlatformInfo>,
}

/// One platform of an image.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct PlatformInfo {
    /// `os/arch[/variant]`.
    pub platform: String,
    /// Digest of this platform's manifest.
    pub digest: String,
    /// The config's `created` time, as written.
    pub created: Option<String>,
    /// The config's labels.
    pub labels: BTreeMap<String, String>,
    /// Number of layers.
    pub layers: usize,
    /// Compressed size of config and layers.
    pub size: u64,
}

#[derive(Deserialize)]
struct ImageConfig {
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    os: Option<String>,
    #[serde(default)]
    architecture: Option<String>,
    #[serde(default)]
    variant: Option<String>,
    #[serde(default)]
    config: Option<ImageConfigConfig>,
}
#[derive(Deserialize)]
struct ImageConfigConfig {
    #[serde(rename = "Labels", default)]
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct TagList {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

/// Most pages a paginated listing may take: far beyond any real repository's tags at the
/// registries' page sizes, and a stop for a registry whose `next` links never end.
pub(crate) const MAX_PAGES: usize = 10_000;

/// Extracts the `rel="next"` target of a `Link` header.
pub(crate) fn next_link(headers: &HeaderMap) -> Option<String> {
    for value in headers.get_all(reqwest::header::LINK) {
        let Ok(v) = value.to_str() else { continue };
        for link in v.split(',') {
            let mut parts = link.split(';');
            let target = parts.next()?.trim();
            let is_next = parts.any(|p| {
                let p = p.trim().replace(' ', "");
                p == "rel=\"next\"" || p == "rel=next"
            });
            if is_next {
                return Some(target.trim_start_matches('<').trim_end_matches('>').to_string());
            }
        }
    }
    None
}

impl Client {
    /// Resolves a `Location` or `Link` target as a browser would (RFC 3986): against the URL of
    /// the request that answered it, so absolute URLs, `//host/...`, `/path` and `../path` all
    /// land where the registry meant.
    pub(crate) fn absolute(request_url: &str, location: &str) -> Result<String> {
        let bad = |reason: String| Error::Protocol {
            url: request_url.to_string(),
            reason,
        };
        let base = url::Url::parse(request_url).map_err(|e| bad(format!("not a URL: {e}")))?;
        let target = base
            .join(location)
            .map_err(|e| bad(format!("Location/Link target {location:?} does not resolve: {e}")))?;
        if !matches!(target.scheme(), "http" | "https") {
            return Err(bad(format!("Location/Link target {target} is not HTTP(S)")));
        }
        Ok(target.into())
    }

    /// Fetches a manifest or index exactly as stored, checking its digest against the reference's
    /// digest and the registry's `Docker-Content-Digest`.
    pub async fn get_manifest(&self, reference: &Reference) -> Result<Manifest> {
        let url = format!("{}/manifests/{}", self.repo_url(reference), reference.target());
        let call = Call::new(Method::GET, url.clone(), reference, Scope::pull(reference.repository()))
            .header(ACCEPT, MANIFEST_ACCEPT);
        let response = self.execute(&call).await?;
        let what = format!("manifest {}", reference.target());
        let response = self
            .check(&Method::GET, &url, response, Some((&what, reference)))
            .await?;
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let header_digest = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = read_body("GET", &url, response, MANIFEST_BODY).await?;
        let manifest = Manifest::from_bytes(body, content_type.as_deref())?;
        for expected in [reference.digest().map(str::to_string), header_digest]
            .into_iter()
            .flatten()
        {
            if expected.starts_with("sha256:") && expected != manifest.digest() {
                return Err(Error::DigestMismatch {
                    what: format!("manifest {reference}"),
                    expected,
                    actual: manifest.digest().to_string(),
                });
            }
        }
        Ok(manifest)
    }

    /// The descriptor of a manifest (HEAD), or `None` when it does not exist.
    pub async fn head_manifest(&self, reference: &Reference) -> Result<Option<Descriptor>> {
        let url = format!("{}/manifests/{}", self.repo_url(reference), reference.target());
        let call = Call::new(
            Method::HEAD,
            url.clone(),
            reference,
            Scope::pull(reference.repository()),
        )
        .header(ACCEPT, MANIFEST_ACCEPT);
        let response = self.execute(&call).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = self.check(&Method::HEAD, &url, response, None).await?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        match (header("docker-content-digest"), header("content-type")) {
            (Some(digest), Some(media_type)) => Ok(Some(Descriptor {
                media_type: media_type.split(';').next().unwrap_or_default().trim().to_string(),
                digest,
                size: header("content-length").and_then(|s| s.parse().ok()).unwrap_or(0),
            })),
            // Registries that do not send the digest on HEAD: fetch the manifest.
            _ => Ok(Some(self.get_manifest(reference).await?.descriptor())),
        }
    }

    /// Stores a manifest under the reference's tag (or digest), byte for byte; returns its digest.
    pub async fn put_manifest(&self, reference: &Reference, manifest: &Manifest) -> Result<String> {
        let url = format!("{}/manifests/{}", self.repo_url(reference), reference.target());
        let call = Call::new(Method::PUT, url.clone(), reference, Scope::push(reference.repository()))
            .header(CONTENT_TYPE, manifest.media_type())
            .body(manifest.bytes().clone());
        let response = self.execute(&call).await?;
        let response = self.check(&Method::PUT, &url, response, None).await?;
        if let Some(d) = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            && d != manifest.digest()
        {
            return Err(Error::DigestMismatch {
                what: format!("manifest stored as {reference}"),
                expected: manifest.digest().to_string(),
                actual: d.to_string(),
            });
        }
        Ok(manifest.digest().to_string())
    }

    /// Gives an existing manifest another tag without changing a byte (so the digest stays, also
    /// for indexes): GET the raw manifest at `from` (a tag or a digest) and PUT it as `to`.
    /// Two registry requests once authenticated. Returns the digest.
    pub async fn promote(&self, repository: &Reference, from: &str, to: &str) -> Result<String> {
        let source = if from.contains(':') {
            repository.with_digest(from)?
        } else {
            repository.with_tag(from)?
        };
        let manifest = self.get_manifest(&source).await?;
        self.put_manifest(&repository.with_tag(to)?, &manifest).await
    }

    /// Deletes a manifest (by digest; a tag is resolved first). Registries often disable deletes:
    /// that is an [`Error::Http`] with status 405.
    pub async fn delete_manifest(&self, reference: &Reference) -> Result<()> {
        let digest = match reference.digest() {
            Some(d) => d.to_string(),
            None => {
                self.head_manifest(reference)
                    .await?
                    .ok_or_else(|| Error::NotFound {
                        what: format!("manifest {}", reference.target()),
                        reference: format!("{}/{}", reference.registry(), reference.repository()),
                    })?
                    .digest
            }
        };
        let url = format!("{}/manifests/{digest}", self.repo_url(reference));
        let scope = Scope::delete(reference.repository());
        let call = Call::new(Method::DELETE, url.clone(), reference, scope);
        let response = self.execute(&call).await?;
        if response.status() == StatusCode::METHOD_NOT_ALLOWED {
            return Err(Error::Http {
                method: "DELETE".into(),
                url,
                status: 405,
                code: Some("UNSUPPORTED".into()),
                message: "this registry does not allow deleting manifests (distribution: storage.delete.enabled)"
                    .into(),
                retry_after: None,
                request_id: crate::client::request_id(response.headers()),
            });
        }
        let what = format!("manifest {digest}");
        self.check(&Method::DELETE, &url, response, Some((&what, reference)))
            .await?;
        Ok(())
    }

    /// All tags of the repository, following `Link` pagination (`page_size` per request; `None`
    /// lets the registry choose).
    pub async fn tags(&self, repository: &Reference, page_size: Option<usize>) -> Result<Vec<String>> {
        let mut url = format!("{}/tags/list", self.repo_url(repository));
        if let Some(n) = page_size {
            url.push_str(&format!("?n={n}"));
        }
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        loop {
            if seen.len() >= MAX_PAGES {
                return Err(Error::LimitExceeded {
                    what: format!("tag list of {repository}: pages"),
                    limit_name: "MAX_PAGES".into(),
                    limit: MAX_PAGES as u64,
                    value: seen.len() as u64,
                    raise: "a fixed bound on Link pagination; ask for larger pages (page_size)".into(),
                });
            }
            seen.insert(url.clone());
            let call = Call::new(
                Method::GET,
                url.clone(),
                repository,
                Scope::pull(repository.repository()),
            );
            let response = self.execute(&call).await?;
            let response = self
                .check(&Method::GET, &url, response, Some(("repository", repository)))
                .await?;
            let next = next_link(response.headers());
            let body = read_body("GET", &url, response, TAG_LIST_BODY).await?;
            let page: TagList = serde_json::from_slice(&body).map_err(|e| Error::Protocol {
                url: url.clone(),
                reason: format!("tag list is not JSON {{\"tags\": [...]}}: {e}"),
            })?;
            out.extend(page.tags.unwrap_or_default());
            match next {
                Some(n) => {
                    let next = Client::absolute(&url, &n)?;
                    if seen.contains(&next) {
                        return Err(Error::Protocol {
                            url,
                            reason: format!(
                                "Link rel=\"next\" points back to {next}, a page already read: the registry's pagination loops"
                            ),
                        });
                    }
                    url = next;
                }
                None => return Ok(out),
            }
        }
    }

    /// What an image is: per platform, its manifest digest, created time, labels, layers and size.
    pub async fn inspect(&self, reference: &Reference) -> Result<ImageInfo> {
        let top = self.get_manifest(reference).await?;
        let mut platforms = Vec::new();
        match top.parse()? {
            Parsed::Index(index) => {
                for entry in &index.manifests {
                    let child = self.get_manifest(&reference.with_digest(&entry.digest)?).await?;
                    let mut info = self.platform_info(reference, &child).await?;
                    if entry.platform.is_some() {
                        info.platform = platform_string(entry);
                    }
                    platforms.push(info);
                }
            }
            Parsed::Image(_) => platforms.push(self.platform_info(reference, &top).await?),
        }
        Ok(ImageInfo {
            reference: reference.to_string(),
            digest: top.digest().to_string(),
            media_type: top.media_type().to_string(),
            platforms,
        })
    }

    async fn platform_info(&self, reference: &Reference, manifest: &Manifest) -> Result<PlatformInfo> {
        let blobs = manifest.blobs()?;
        let Some(config_desc) = blobs.first() else {
            return Err(Error::invalid(
                format!("manifest {}", manifest.digest()),
                "an index where an image was expected",
            ));
        };
        if config_desc.size > 16 << 20 {
            return Err(Error::invalid(
                format!("config {}", config_desc.digest),
                "larger than 16 MiB",
            ));
        }
        let bytes: Vec<Bytes> = self.blob_stream(reference, config_desc).await?.try_collect().await?;
        let config: ImageConfig = serde_json::from_slice(&bytes.concat())
            .map_err(|e| Error::invalid(format!("config {}", config_desc.digest), e))?;
        let mut platform = format!(
            "{}/{}",
            config.os.as_deref().unwrap_or("unknown"),
            config.architecture.as_deref().unwrap_or("unknown")
        );
        if let Some(v) = config.variant {
            platform = format!("{platform}/{v}");
        }
        Ok(PlatformInfo {
            platform,
            digest: manifest.digest().to_string(),
            created: config.created,
            labels: config.config.and_then(|c| c.labels).unwrap_or_default(),
            layers: blobs.len() - 1,
            size: blobs.iter().map(|b| b.size).sum(),
        })
    }

    /// Whether the repository has the blob (HEAD).
    pub async fn blob_exists(&self, repository: &Reference, digest: &str) -> Result<bool> {
        let url = format!("{}/blobs/{digest}", self.repo_url(repository));
        let call = Call::new(
            Method::HEAD,
            url.clone(),
            repository,
            Scope::pull(repository.repository()),
        );
        let response = self.execute(&call).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        self.check(&Method::HEAD, &url, response, None).await?;
        Ok(true)
    }

    /// Streams a blob, checking its size and digest against the descriptor as it flows.
    pub async fn blob_stream(&self, repository: &Reference, blob: &Descriptor) -> Result<BlobStream> {
        let url = format!("{}/blobs/{}", self.repo_url(repository), blob.digest);
        let call = Call::new(
            Method::GET,
            url.clone(),
            repository,
            Scope::pull(repository.repository()),
        );
        let response = self.execute(&call).await?;
        let what = format!("blob {}", blob.digest);
        let response = self
            .check(&Method::GET, &url, response, Some((&what, repository)))
            .await?;
        let u = url.clone();
        let raw = response.bytes_stream().map_err(move |source| Error::Transport {
            method: "GET".into(),
            url: u.clone(),
            source,
        });
        Ok(Box::pin(Verified::new(
            Box::pin(raw),
            blob.clone(),
            format!("{what} from {url}"),
        )))
    }

    /// Opens an upload session, or mounts the blob from `mount_from` (a repository of the same
    /// registry) when given. A registry that cannot mount answers 202 with a session: we upload.
    pub(crate) async fn start_upload(
        &self,
        repository: &Reference,
        mount: Option<(&str, &str)>,
    ) -> Result<UploadStart> {
        let mut url = format!("{}/blobs/uploads/", self.repo_url(repository));
        let mut scope = Scope::push(repository.repository());
        if let Some((digest, from)) = mount {
            url.push_str(&format!("?mount={digest}&from={from}"));
            scope = scope.and_pull(from);
        }
        let call = Call::new(Method::POST, url.clone(), repository, scope);
        let response = self.execute(&call).await?;
        let status = response.status();
        if mount.is_some() && status == StatusCode::CREATED {
            return Ok(UploadStart::Mounted);
        }
        let response = self.check(&Method::POST, &url, response, None).await?;
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Error::Protocol {
                url: url.clone(),
                reason: format!("HTTP {status} without a Location header for the upload"),
            })?;
        Ok(UploadStart::Session(Client::absolute(&url, location)?))
    }

    /// [`Client::start_upload`] in a task of its own: if the caller goes away while the POST is in
    /// flight (a sibling blob failed and the copy was dropped), the session the registry opened
    /// is cancelled instead of being left behind.
    async fn start_upload_detached(
        &self,
        repository: &Reference,
        mount: Option<(String, String)>,
    ) -> Result<UploadStart> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (client, repo) = (self.clone(), repository.clone());
        tokio::spawn(async move {
            let start = client
                .start_upload(&repo, mount.as_ref().map(|(d, f)| (d.as_str(), f.as_str())))
                .await;
            if let Err(Ok(UploadStart::Session(session))) = tx.send(start) {
                client.cancel_upload(&repo, &session).await;
            }
        });
        rx.await.map_err(|_| Error::Protocol {
            url: repository.to_string(),
            reason: "the upload task ended without an answer".into(),
        })?
    }

    /// Uploads a blob into a session (`data` must be a verified blob stream, from
    /// [`Client::blob_stream`] or [`crate::OciLayout::blob_stream`]): one streamed PUT, or PATCH chunks then a closing PUT when
    /// [`crate::UploadOptions::chunk_size`] is set. The registry checks the digest too.
    pub(crate) async fn upload_blob(
        &self,
        repository: &Reference,
        session: String,
        blob: &Descriptor,
        data: BlobStream,
        progress: Option<Arc<dyn Fn(u64) + Send + Sync>>,
    ) -> Result<()> {
        // `data` is a registry's or a layout's verified blob stream: counted here, hashed there.
        let verified = Verified::new(data, blob.clone(), format!("blob {}", blob.digest))
            .trusting_upstream_digest()
            .on_bytes(progress);
        let slot = verified.slot();
        let scope = Scope::push(repository.repository());
        let result = match self.inner.upload.chunk_size {
            None => {
                let url = with_digest(&session, &blob.digest);
                let mut headers = HeaderMap::new();
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
                headers.insert(CONTENT_LENGTH, HeaderValue::from(blob.size));
                let body = reqwest::Body::wrap_stream(verified);
                match self
                    .execute_streaming(Method::PUT, &url, repository, &scope, headers, body)
                    .await
                {
                    Ok(r) => self.check(&Method::PUT, &url, r, None).await.map(drop),
                    Err(e) => Err(e),
                }
            }
            Some(chunk) => {
                self.upload_chunked(repository, session, blob, Box::pin(verified), chunk)
                    .await
            }
        };
        result
            .map_err(|e| recorded_or(&slot, e))
            .map_err(|e| too_large_hint(e, &self.inner.upload))
    }

    async fn upload_chunked(
        &self,
        repository: &Reference,
        mut session: String,
        blob: &Descriptor,
        mut data: BlobStream,
        chunk: usize,
    ) -> Result<()> {
        let scope = Scope::push(repository.repository());
        // `Some(0)` would send empty chunks forever: one byte is the least that makes progress.
        let chunk = chunk.max(1);
        let mut offset = 0u64;
        // Preallocated up to 8 MiB only: a huge chunk size is a bound, not a promise of data.
        let mut buf = BytesMut::with_capacity(chunk.min(8 << 20));
        let mut finished = false;
        while !finished {
            while buf.len() < chunk {
                match data.next().await {
                    Some(part) => buf.extend_from_slice(&part?),
                    None => {
                        finished = true;
                        break;
                    }
                }
            }
            while buf.len() >= chunk || (finished && !buf.is_empty()) {
                let piece = buf.split_to(chunk.min(buf.len())).freeze();
                let end = offset + piece.len() as u64 - 1;
                let call = Call::new(Method::PATCH, session.clone(), repository, scope.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_RANGE, &format!("{offset}-{end}"))
                    .body(piece);
                let response = self.execute(&call).await?;
                let response = self.check(&Method::PATCH, &session, response, None).await?;
                if let Some(l) = response.headers().get(LOCATION).and_then(|v| v.to_str().ok()) {
                    session = Client::absolute(&session, l)?;
                }
                offset = end + 1;
            }
        }
        let url = with_digest(&session, &blob.digest);
        let call = Call::new(Method::PUT, url.clone(), repository, scope);
        let response = self.execute(&call).await?;
        self.check(&Method::PUT, &url, response, None).await.map(drop)
    }

    /// Puts a blob into the repository unless it is there: HEAD, then mount from `mount_from` when
    /// given, else (or when the registry declines the mount) upload what `open` streams.
    pub(crate) async fn ensure_blob<F, Fut>(
        &self,
        repository: &Reference,
        blob: &Descriptor,
        mount_from: Option<&str>,
        open: F,
        progress: Option<Arc<dyn Fn(u64) + Send + Sync>>,
    ) -> Result<BlobOutcome>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<BlobStream>>,
    {
        if self.blob_exists(repository, &blob.digest).await? {
            return Ok(BlobOutcome::Existed);
        }
        let policy = self.inner.retry.clone();
        let mut attempt = 0;
        let mut mount = mount_from.filter(|from| *from != repository.repository());
        loop {
            attempt += 1;
            let start = self
                .start_upload_detached(repository, mount.map(|from| (blob.digest.clone(), from.to_string())))
                .await?;
            let session = match start {
                UploadStart::Mounted => return Ok(BlobOutcome::Mounted),
                UploadStart::Session(s) => s,
            };
            // Declined once: do not ask again on a retry.
            mount = None;
            // An upload that fails, or is abandoned (a sibling blob failed and the copy was
            // dropped), is cancelled so the registry does not keep its partial data.
            let mut guard = AbandonedUpload {
                client: Some(self.clone()),
                repository: repository.clone(),
                session: session.clone(),
            };
            let result = match open().await {
                Ok(data) => {
                    self.upload_blob(repository, session, blob, data, progress.clone())
                        .await
                }
                Err(e) => Err(e),
            };
            if result.is_ok() {
                guard.client = None;
            } else if let Some(client) = guard.client.take() {
                // In a task of its own, so that it finishes even if this future is dropped now.
                if let Some(task) =
                    cancel_in_background(client, guard.repository.clone(), std::mem::take(&mut guard.session))
                {
                    let _ = task.await;
                }
            }
            match result {
                Ok(()) => return Ok(BlobOutcome::Uploaded),
                Err(e) if e.is_retryable() && attempt <= policy.retry_limit() => {
                    let wait = match &e {
                        Error::Http { retry_after, .. } => *retry_after,
                        _ => None,
                    };
                    let d = crate::client::retry_delay(&policy, attempt, wait);
                    tracing::warn!(blob = %blob.digest, error = %e, delay = ?d, "blob upload failed; retrying");
                    tokio::time::sleep(d).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Cancels an upload session when dropped armed (the future that owned it went away).
struct AbandonedUpload {
    client: Option<Client>,
    repository: Reference,
    session: String,
}

impl Drop for AbandonedUpload {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else { return };
        let _ = cancel_in_background(client, self.repository.clone(), std::mem::take(&mut self.session));
    }
}

/// Cancels an upload session in a task of its own (when there is a runtime to run it).
fn cancel_in_background(client: Client, repository: Reference, session: String) -> Option<tokio::task::JoinHandle<()>> {
    let rt = tokio::runtime::Handle::try_current().ok()?;
    Some(rt.spawn(async move { client.cancel_upload(&repository, &session).await }))
}

impl Client {
    /// `DELETE` an upload session, best effort: registries purge stale sessions eventually, but
    /// until then they hold the partial data.
    pub(crate) async fn cancel_upload(&self, repository: &Reference, session: &str) {
        let call = Call::new(
            Method::DELETE,
            session.to_string(),
            repository,
            Scope::cancel_upload(repository.repository()),
        );
        match self.execute(&call).await {
            Ok(r) if r.status().is_success() || r.status() == StatusCode::NOT_FOUND => {
                tracing::debug!(session, "upload session cancelled");
            }
            Ok(r) => tracing::debug!(session, status = %r.status(), "the registry kept the upload session"),
            Err(e) => tracing::debug!(session, "cancelling the upload session failed: {e}"),
        }
    }
}

fn with_digest(session: &str, digest: &str) -> String {
    let sep = if session.contains('?') { '&' } else { '?' };
    format!("{session}{sep}digest={}", digest.replace(':', "%3A"))
}

fn too_large_hint(e: Error, upload: &crate::client::UploadOptions) -> Error {
    match e {
        Error::Http {
            method,
            url,
            status: 413,
            code,
            message,
            retry_after,
            request_id,
        } => Error::Http {
            method,
            url,
            status: 413,
            code,
            message: format!(
                "{message} (the registry or a proxy caps the request size; {})",
                match upload.chunk_size {
                    None => "set UploadOptions::chunk_size to upload in chunks".to_string(),
                    Some(n) => format!("chunks of {n} bytes are still too large: use smaller ones"),
                }
            ),
            retry_after,
            request_id,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers_give_the_next_page() {
        let mut h = HeaderMap::new();
        h.insert(
            reqwest::header::LINK,
            HeaderValue::from_static(r#"</v2/cern/alma9/tags/list?last=b&n=2>; rel="next""#),
        );
        assert_eq!(next_link(&h).as_deref(), Some("/v2/cern/alma9/tags/list?last=b&n=2"));
        h.insert(reqwest::header::LINK, HeaderValue::from_static(r#"</x>; rel="prev""#));
        assert_eq!(next_link(&h), None);
    }

    #[test]
    fn location_and_link_targets_resolve_like_a_browser() {
        let base = "http://reg.example:5000/v2/cern/alma9/blobs/uploads/?mount=a&from=b";
        for (location, expected) in [
            ("https://other.example/up/1", "https://other.example/up/1"),
            (
                "/v2/cern/alma9/blobs/uploads/s1?_state=x",
                "http://reg.example:5000/v2/cern/alma9/blobs/uploads/s1?_state=x",
            ),
            (
                "../uploads/s2",
                "http://reg.example:5000/v2/cern/alma9/blobs/uploads/s2",
            ),
            ("s3", "http://reg.example:5000/v2/cern/alma9/blobs/uploads/s3"),
            ("//cdn.example/u/s4", "http://cdn.example/u/s4"),
        ] {
            assert_eq!(Client::absolute(base, location).unwrap(), expected, "{location}");
        }
        assert!(Client::absolute(base, "file:///etc/passwd").is_err());
    }

    mod fuzz {
        use proptest::prelude::*;

        use super::super::*;

        fn config() -> ProptestConfig {
            ProptestConfig {
                failure_persistence: None,
                ..ProptestConfig::default()
            }
        }

        proptest! {
            #![proptest_config(config())]

            /// `Link` headers: no panic; a `next` target, when found, resolves to an HTTP(S) URL
            /// or is refused with a typed error.
            #[test]
            fn fuzz_link_headers(
                values in prop::collection::vec(
                    prop_oneof![
                        any::<Vec<u8>>(),
                        "(<[^>]{0,30}>?)?(; ?rel=\"?(next|prev|last)\"?)?(, ?<[^>]{0,20}>; rel=next)?".prop_map(String::into_bytes),
                        "[<>;=, \"a-z/:?&.]{0,40}".prop_map(String::into_bytes),
                    ],
                    0..3,
                ),
                base in prop_oneof![
                    Just("http://reg.example:5000/v2/a/tags/list?n=2".to_string()),
                    Just("https://[::1]/v2/a/b/tags/list".to_string()),
                    "[a-z:/.?]{0,20}",
                ],
            ) {
                let mut h = HeaderMap::new();
                for v in &values {
                    if let Ok(v) = HeaderValue::from_bytes(v) {
                        h.append(reqwest::header::LINK, v);
                    }
                }
                if let Some(next) = next_link(&h) {
                    match Client::absolute(&base, &next) {
                        Ok(u) => prop_assert!(u.starts_with("http://") || u.starts_with("https://"), "{u}"),
                        Err(e) => prop_assert!(matches!(e, Error::Protocol { .. }), "{e:?}"),
                    }
                }
            }
        }
    }

    #[test]
    fn upload_urls_get_the_digest_appended() {
        assert_eq!(
            with_digest("http://r/v2/a/blobs/uploads/u1", "sha256:ab"),
            "http://r/v2/a/blobs/uploads/u1?digest=sha256%3Aab"
        );
        assert_eq!(
            with_digest("http://r/u1?_state=xyz", "sha256:ab"),
            "http://r/u1?_state=xyz&digest=sha256%3Aab"
        );
    }
}
