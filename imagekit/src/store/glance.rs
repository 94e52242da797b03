use std::collections::BTreeMap;

use async_trait::async_trait;
use openstack_client::WaitOptions;
use openstack_client::glance::ImageId;
use openstack_client::glance::{CreateImage, Glance, Image, ImageSource, ImageStatus, ListImages, PatchOp, Visibility};

use super::{ImageChange, ImageData, ImageQuery, ImageStore, NewImage, StoredImage};
use crate::error::{Error, Result};

/// Glance in one cloud.
#[derive(Debug, Clone)]
pub struct GlanceStore {
    cloud: String,
    glance: Glance,
    wait: WaitOptions,
}

impl GlanceStore {
    /// Glance of the cloud named `cloud` (the name is what reports and the journal show).
    pub fn new(cloud: &str, glance: Glance) -> GlanceStore {
        GlanceStore {
            cloud: cloud.to_string(),
            glance,
            wait: WaitOptions::default(),
        }
    }

    /// Glance of a cloud of the user's clouds.yaml (+ secure.yaml, `OS_*`), as openstacksdk finds it.
    pub fn from_cloud(cloud: &str) -> Result<GlanceStore> {
        Ok(GlanceStore::new(
            cloud,
            openstack_client::Client::builder().cloud(cloud).build()?.glance(),
        ))
    }

    /// How long to wait for an uploaded image to become active.
    pub fn wait(mut self, wait: WaitOptions) -> GlanceStore {
        self.wait = wait;
        self
    }
}

fn stored(image: Image) -> StoredImage {
    let properties: BTreeMap<String, String> = image
        .properties
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "self" | "file" | "schema" | "stores" | "direct_url" | "locations"
            )
        })
        .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
        .collect();
    StoredImage {
        id: image.id.to_string(),
        name: image.name.unwrap_or_default(),
        status: image.status.as_str().to_string(),
        visibility: image.visibility.as_str().to_string(),
        hidden: image.os_hidden,
        properties,
        tags: image.tags,
        size: image.size,
        sha512: image.os_hash_value,
        created_at: image.created_at,
    }
}

fn visibility(v: &str) -> Result<Visibility> {
    match Visibility::from(v) {
        Visibility::Unknown(v) => Err(Error::InvalidInput(format!(
            "visibility {v:?} is not private, shared, community or public"
        ))),
        v => Ok(v),
    }
}

/// The create request for `image` (its id chosen client-side, see [`CreateImage::chosen_id`]).
fn create_request(image: &NewImage) -> Result<CreateImage> {
    let mut req = CreateImage::new(&image.name, &image.disk_format).container_format("bare");
    if !image.visibility.is_empty() {
        req = req.visibility(visibility(&image.visibility)?);
    }
    for (k, v) in &image.properties {
        req = req.property(k, v);
    }
    for t in &image.tags {
        req = req.tag(t);
    }
    Ok(req)
}

#[async_trait]
impl ImageStore for GlanceStore {
    fn name(&self) -> String {
        format!("cloud:{}", self.cloud)
    }

    async fn create_and_upload(
        &self,
        image: &NewImage,
        data: ImageData,
        created: &(dyn for<'a> Fn(&'a str) -> Result<()> + Send + Sync),
    ) -> Result<StoredImage> {
        let req = create_request(image)?;
        // The id is chosen here and journaled before the POST: if the answer to the create is
        // lost, or the process dies right after it, resume and sweep still know the image.
        let id = req.chosen_id().clone();
        created(id.as_str())?;
        let record = self.glance.create(&req).await?;
        let id = record.id.clone();
        let result = async {
            self.glance
                .upload(
                    &id,
                    ImageSource::Reader {
                        reader: data.reader,
                        length: data.length,
                    },
                )
                .await?;
            Ok::<_, Error>(
                self.glance
                    .wait_for_status(&id, ImageStatus::Active, &self.wait)
                    .await?,
            )
        }
        .await;
        match result {
            Ok(img) => Ok(stored(img)),
            Err(e) => {
                tracing::warn!(image = %id, error = %e, "upload failed; deleting the image");
                if let Err(del) = self.glance.delete(&id).await {
                    tracing::error!(image = %id, error = %del, "could not delete the failed image; `imagekit sweep` will");
                }
                Err(e)
            }
        }
    }

    async fn create_record(&self, image: &NewImage) -> Result<StoredImage> {
        Ok(stored(self.glance.create(&create_request(image)?).await?))
    }

    async fn list(&self, query: &ImageQuery) -> Result<Vec<StoredImage>> {
        let mut q = ListImages::new().all_visibilities();
        if let Some(n) = &query.name {
            q = q.name(n.clone());
        }
        for (k, v) in &query.properties {
            q = q.property(k.clone(), v.clone());
        }
        // Glance lists hidden images only when asked; ask both ways.
        let mut images = self.glance.list(&q).await?;
        images.extend(self.glance.list(&q.hidden(true)).await?);
        Ok(images.into_iter().map(stored).collect())
    }

    async fn get(&self, id: &str) -> Result<StoredImage> {
        Ok(stored(self.glance.get(&ImageId::from(id)).await?))
    }

    async fn update(&self, id: &str, changes: &[ImageChange]) -> Result<StoredImage> {
        let ops = changes
            .iter()
            .map(|c| {
                Ok(match c {
                    ImageChange::Rename(n) => PatchOp::Rename(n.clone()),
                    ImageChange::Visibility(v) => PatchOp::Visibility(visibility(v)?),
                    ImageChange::Hidden(h) => PatchOp::Hidden(*h),
                    ImageChange::SetProperty(k, v) => PatchOp::SetProperty(k.clone(), v.clone()),
                    ImageChange::RemoveProperty(k) => PatchOp::RemoveProperty(k.clone()),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(stored(self.glance.update(&ImageId::from(id), &ops).await?))
    }

    async fn delete(&self, id: &str) -> Result<()> {
        match self.glance.delete(&ImageId::from(id)).await {
            Err(openstack_client::Error::NotFound { .. }) => Ok(()),
            Err(openstack_client::Error::Api { status: 404, .. }) => Ok(()),
            other => Ok(other?),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Mutex;

    use openstack_client::testing::{MockOpenStack, Service};
    use openstack_client::{RetryPolicy, Session};

    use super::*;

    #[tokio::test]
    async fn the_image_id_is_reported_before_the_create_so_a_lost_answer_leaves_it_known() {
        let cloud = MockOpenStack::start_behind_proxy().await;
        cloud.drop_answer_to_next(Service::Image, "POST", "v2/images");
        // No retries: the run dies with the answer lost, as a crash right after the POST would.
        let session = Session::builder(cloud.credentials())
            .region("RegionOne")
            .retry(RetryPolicy::none())
            .build()
            .unwrap();
        let store = GlanceStore::new("mock", Glance::new(session));
        let heard = Mutex::new(Vec::new());
        let record = |id: &str| {
            heard.lock().unwrap().push(id.to_string());
            Ok(())
        };
        let data = ImageData {
            reader: Box::pin(std::io::Cursor::new(vec![0u8; 16])),
            length: 16,
        };
        store
            .create_and_upload(&NewImage::new("lost", "raw"), data, &record)
            .await
            .unwrap_err();
        let images = cloud.images();
        assert_eq!(images.len(), 1, "the create was carried out");
        assert_eq!(*heard.lock().unwrap(), [images[0]["id"].as_str().unwrap()]);
    }
}
