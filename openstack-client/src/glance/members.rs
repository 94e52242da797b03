//! Image members: sharing an image with other projects.

use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::Glance;
use super::images::ImageId;
use crate::error::Result;
use crate::session::ApiRequest;
use crate::session::segment;
use crate::util::string_enum;

string_enum!(
    /// A member's answer to a share.
    MemberStatus {
        /// Not answered yet: the image is not in the member's default listing.
        Pending = "pending",
        /// Accepted: listed and bootable.
        Accepted = "accepted",
        /// Rejected.
        Rejected = "rejected",
    }
);

/// A project an image is shared with.
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct Member {
    /// The image.
    pub image_id: ImageId,
    /// The project.
    pub member_id: String,
    /// Its answer.
    pub status: MemberStatus,
    /// When shared.
    #[serde(default)]
    pub created_at: Option<String>,
    /// Last change.
    #[serde(default)]
    pub updated_at: Option<String>,
}

#[derive(Deserialize)]
struct Members {
    members: Vec<Member>,
}

impl Glance {
    /// Share an image with a project (the image must have `shared` visibility).
    pub async fn add_member(&self, id: &ImageId, project_id: &str) -> Result<Member> {
        let url = self.url(&format!("images/{id}/members")).await?;
        self.session
            .send_json(ApiRequest::new(Method::POST, url).json(json!({ "member": project_id })))
            .await
    }

    /// Accept or reject a share, as the member project.
    pub async fn set_member_status(&self, id: &ImageId, project_id: &str, status: MemberStatus) -> Result<Member> {
        let url = self
            .url(&format!("images/{id}/members/{}", segment(project_id)))
            .await?;
        self.session
            .send_json(ApiRequest::new(Method::PUT, url).json(json!({ "status": status.as_str() })))
            .await
    }

    /// The projects an image is shared with.
    pub async fn members(&self, id: &ImageId) -> Result<Vec<Member>> {
        let url = self.url(&format!("images/{id}/members")).await?;
        let m: Members = self.session.send_json(ApiRequest::new(Method::GET, url).page()).await?;
        Ok(m.members)
    }

    /// Stop sharing with a project.
    pub async fn remove_member(&self, id: &ImageId, project_id: &str) -> Result<()> {
        let url = self
            .url(&format!("images/{id}/members/{}", segment(project_id)))
            .await?;
        self.session.send(ApiRequest::new(Method::DELETE, url)).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_lists_from_the_api_reference_decode() {
        let m: Members = serde_json::from_str(include_str!(
            "../../tests/fixtures/glance/image-members-list-response.json"
        ))
        .unwrap();
        assert_eq!(m.members.len(), 2);
        assert_eq!(m.members[0].status, MemberStatus::Pending);
        assert_eq!(m.members[1].status, MemberStatus::Accepted);
    }
}
