use std::path::{Path, PathBuf};

use async_trait::async_trait;
use sha2::{Digest as _, Sha512};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::{ImageChange, ImageData, ImageQuery, ImageStore, NewImage, StoredImage};
use crate::error::{Error, Result};
use crate::journal::{now, rfc3339};

/// A directory as an image store: `ID.img` holds the data, `ID.json` the metadata. Ids are
/// random; data is written to a temporary name, hashed on the way, and renamed once complete.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

impl LocalStore {
    /// The store in `root` (created when missing).
    pub fn new(root: &Path) -> LocalStore {
        LocalStore {
            root: root.to_path_buf(),
        }
    }

    /// Where an image's data lives (for local boots).
    pub fn data_path(&self, id: &str) -> Result<PathBuf> {
        Ok(self.root.join(format!("{}.img", checked_id(id)?)))
    }

    fn meta_path(&self, id: &str) -> Result<PathBuf> {
        Ok(self.root.join(format!("{}.json", checked_id(id)?)))
    }

    /// Writes the metadata whole or not at all: a unique temporary file in the store, renamed
    /// over the old one. Two writers never share a temporary name, and an error leaves no
    /// temporary file behind. Synchronous on purpose (the file is small): with no await point
    /// inside, a cancelled upload cannot have a write land after its cleanup.
    fn write_meta(&self, image: &StoredImage) -> Result<()> {
        use std::io::Write as _;
        let path = self.meta_path(&image.id)?;
        let text = serde_json::to_vec_pretty(image).map_err(|e| Error::InvalidInput(e.to_string()))?;
        // NamedTempFile is created 0600: metadata stays the user's.
        let mut tmp = tempfile::Builder::new()
            .prefix(".meta-")
            .suffix(".tmp")
            .tempfile_in(&self.root)
            .map_err(|e| io(&self.root, e))?;
        tmp.write_all(&text).map_err(|e| io(tmp.path(), e))?;
        tmp.persist(&path).map_err(|e| io(&path, e.error))?;
        Ok(())
    }

    async fn create_root(&self) -> Result<()> {
        // Unreleased images and their metadata are the user's: directories made here are 0700,
        // files 0600; a directory that exists keeps its mode.
        tokio::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .await
            .map_err(|e| io(&self.root, e))
    }

    fn new_record(image: &NewImage) -> StoredImage {
        StoredImage {
            id: new_id(),
            name: image.name.clone(),
            status: "queued".into(),
            visibility: if image.visibility.is_empty() {
                "private".into()
            } else {
                image.visibility.clone()
            },
            hidden: false,
            properties: image.properties.clone(),
            tags: image.tags.clone(),
            size: None,
            sha512: None,
            created_at: Some(rfc3339(now())),
        }
    }
}

/// Files of an upload under way, removed if the upload does not finish — by an error, or because
/// its future was dropped (Ctrl-C): nothing unjournaled stays behind.
struct Uncommitted(Vec<PathBuf>);

impl Uncommitted {
    fn commit(mut self) {
        self.0.clear();
    }
}

impl Drop for Uncommitted {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Creates (or truncates) `path` as a file only the user can read: 0600 when new.
async fn private_file(path: &Path) -> Result<tokio::fs::File> {
    tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .await
        .map_err(|e| io(path, e))
}

/// Ids are 32 hex digits; anything else could name a file outside the store.
fn checked_id(id: &str) -> Result<&str> {
    if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id)
    } else {
        Err(Error::InvalidInput(format!(
            "{id:?} is not an image id of the local store"
        )))
    }
}

fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

#[async_trait]
impl ImageStore for LocalStore {
    fn name(&self) -> String {
        format!("local:{}", self.root.display())
    }

    async fn create_and_upload(
        &self,
        image: &NewImage,
        mut data: ImageData,
        created: &(dyn for<'a> Fn(&'a str) -> Result<()> + Send + Sync),
    ) -> Result<StoredImage> {
        self.create_root().await?;
        let mut record = LocalStore::new_record(image);
        let path = self.data_path(&record.id)?;
        let tmp = path.with_extension("img.partial");
        let guard = Uncommitted(vec![tmp.clone(), path.clone(), self.meta_path(&record.id)?]);
        self.write_meta(&record)?;
        let result = async {
            created(&record.id)?;
            let mut file = private_file(&tmp).await?;
            let mut hasher = Sha512::new();
            let mut buf = vec![0u8; 1 << 20];
            let mut total = 0u64;
            loop {
                let n = data.reader.read(&mut buf).await.map_err(|e| io(&tmp, e))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                file.write_all(&buf[..n]).await.map_err(|e| io(&tmp, e))?;
                total += n as u64;
            }
            if total != data.length {
                return Err(Error::InvalidInput(format!(
                    "image data ended after {total} bytes, {} were announced (truncated source?)",
                    data.length
                )));
            }
            file.sync_all().await.map_err(|e| io(&tmp, e))?;
            tokio::fs::rename(&tmp, &path).await.map_err(|e| io(&path, e))?;
            Ok(hex::encode(hasher.finalize()))
        }
        .await;
        // On an error the guard deletes the partial data and the record.
        let sha512 = result?;
        record.status = "active".into();
        record.size = Some(data.length);
        record.sha512 = Some(sha512);
        self.write_meta(&record)?;
        guard.commit();
        Ok(record)
    }

    async fn create_record(&self, image: &NewImage) -> Result<StoredImage> {
        self.create_root().await?;
        let record = LocalStore::new_record(image);
        self.write_meta(&record)?;
        Ok(record)
    }

    async fn list(&self, query: &ImageQuery) -> Result<Vec<StoredImage>> {
        let mut out = Vec::new();
        let mut dir = match tokio::fs::read_dir(&self.root).await {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io(&self.root, e)),
        };
        while let Some(entry) = dir.next_entry().await.map_err(|e| io(&self.root, e))? {
            let name = entry.file_name().to_string_lossy().to_string();
            let Some(id) = name.strip_suffix(".json") else { continue };
            if checked_id(id).is_err() {
                continue;
            }
            let image = match self.get(id).await {
                Ok(image) => image,
                // Deleted since the directory was read (a lock marker released, a sweep).
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            };
            let name_ok = query.name.as_ref().is_none_or(|n| *n == image.name);
            let props_ok = query.properties.iter().all(|(k, v)| image.properties.get(k) == Some(v));
            if name_ok && props_ok {
                out.push(image);
            }
        }
        out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    async fn get(&self, id: &str) -> Result<StoredImage> {
        let path = self.meta_path(id)?;
        let text = tokio::fs::read(&path).await.map_err(|e| io(&path, e))?;
        serde_json::from_slice(&text).map_err(|e| Error::InvalidInput(format!("{}: {e}", path.display())))
    }

    async fn update(&self, id: &str, changes: &[ImageChange]) -> Result<StoredImage> {
        let mut image = self.get(id).await?;
        for c in changes {
            match c {
                ImageChange::Rename(n) => image.name = n.clone(),
                ImageChange::Visibility(v) => {
                    if !["private", "shared", "community", "public"].contains(&v.as_str()) {
                        return Err(Error::InvalidInput(format!(
                            "visibility {v:?} is not private, shared, community or public"
                        )));
                    }
                    image.visibility = v.clone();
                }
                ImageChange::Hidden(h) => image.hidden = *h,
                ImageChange::SetProperty(k, v) => {
                    image.properties.insert(k.clone(), v.clone());
                }
                ImageChange::RemoveProperty(k) => {
                    image.properties.remove(k);
                }
            }
        }
        self.write_meta(&image)?;
        Ok(image)
    }

    fn local_path(&self, id: &str) -> Option<PathBuf> {
        self.data_path(id).ok()
    }

    async fn delete(&self, id: &str) -> Result<()> {
        // The partial file too: what an upload cut short by a crash left behind.
        let partial = self.data_path(id)?.with_extension("img.partial");
        for path in [self.data_path(id)?, partial, self.meta_path(id)?] {
            match tokio::fs::remove_file(&path).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&path, e)),
            }
        }
        Ok(())
    }
}
