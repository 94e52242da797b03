//! Promoting a tested cloud image: the TEST image gets the production name, its visibility and the
//! promotion record (run, test report, time); the image that was production until now is rotated —
//! renamed with its date, and hidden (`os_hidden`) or made community — and only the newest
//! [`PromotePolicy::keep`] rotated images stay, older ones deleted only when asked.
//!
//! [`plan`] computes the steps without changing anything (the dry run prints them); [`apply`]
//! carries them out, the candidate first so there is always a production image.
//!
//! ```no_run
//! # async fn demo(store: &dyn imagekit::store::ImageStore) -> imagekit::Result<()> {
//! use imagekit::promote::{PromotePolicy, Rotation, apply, plan};
//! use imagekit::store::Visibility;
//! let policy = PromotePolicy::new("ALMA9 - x86_64").visibility(Visibility::Public).rotation(Rotation::Hide).keep(3);
//! let evidence = serde_json::json!({"tests": "12 passed", "report": "https://ci.example/run/42"});
//! let steps = plan(store, "3f0c…", &policy, "20261124t101500-3fa2c1", &evidence).await?;
//! println!("{steps}");
//! apply(store, &steps).await?;
//! # Ok(()) }
//! ```

use std::fmt;

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::journal::{now, precise_now, rfc3339};
use crate::store::{ImageChange, ImageQuery, ImageStore, NewImage, StoredImage, Visibility};

/// The property naming the production line an image belongs to (its production name).
pub const LINE: &str = "imagekit_line";
/// The property saying `production` or `previous`.
pub const STATE: &str = "imagekit_state";
/// When the image was promoted (RFC 3339).
pub const PROMOTED_AT: &str = "imagekit_promoted_at";
/// The run that promoted it.
pub const PROMOTED_BY: &str = "imagekit_promoted_run";
/// The evidence (test results, report URL), as JSON text.
pub const EVIDENCE: &str = "imagekit_evidence";

/// What happens to the image that stops being production.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Rotation {
    /// Hidden from default listings (`os_hidden`), still bootable by id or name.
    #[default]
    Hide,
    /// Visibility `community`: not listed by default, usable by everyone who knows it.
    Community,
    /// Only renamed.
    Rename,
}

/// How to promote.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PromotePolicy {
    /// The production name (`ALMA9 - x86_64`).
    pub production_name: String,
    /// Visibility of the promoted image (default public).
    pub visibility: Visibility,
    /// What happens to the previous production image.
    pub rotation: Rotation,
    /// How many rotated images to keep (default 3).
    pub keep: usize,
    /// Delete rotated images beyond `keep` (default: no, they are only reported).
    pub delete_beyond_keep: bool,
}

impl PromotePolicy {
    /// The production name (`ALMA9 - x86_64`).
    pub fn production_name(mut self, v: impl Into<String>) -> Self {
        self.production_name = v.into();
        self
    }
}

impl PromotePolicy {
    /// Promote to `production_name`, public, hiding the previous image and keeping 3.
    pub fn new(production_name: impl Into<String>) -> PromotePolicy {
        PromotePolicy {
            production_name: production_name.into(),
            visibility: Visibility::Public,
            rotation: Rotation::Hide,
            keep: 3,
            delete_beyond_keep: false,
        }
    }
    /// Visibility of the promoted image.
    pub fn visibility(mut self, v: Visibility) -> Self {
        self.visibility = v;
        self
    }
    /// What happens to the previous production image.
    pub fn rotation(mut self, r: Rotation) -> Self {
        self.rotation = r;
        self
    }
    /// How many rotated images to keep.
    pub fn keep(mut self, n: usize) -> Self {
        self.keep = n;
        self
    }
    /// Delete rotated images beyond `keep`.
    pub fn delete_beyond_keep(mut self, on: bool) -> Self {
        self.delete_beyond_keep = on;
        self
    }
}

/// One step of a promotion.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Step {
    /// The image.
    pub image_id: String,
    /// Its name before the step.
    pub name: String,
    /// What the step does, in words.
    pub action: String,
    /// The metadata changes (empty for a deletion or a no-op).
    #[serde(skip)]
    pub changes: Vec<ImageChange>,
    /// Whether the image is deleted.
    pub delete: bool,
}

/// The steps of a promotion, in order.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Plan {
    /// Where.
    pub store: String,
    /// The steps.
    pub steps: Vec<Step>,
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "promotion plan in {}:", self.store)?;
        for (i, s) in self.steps.iter().enumerate() {
            writeln!(f, "  {}. {} ({}): {}", i + 1, s.name, s.image_id, s.action)?;
        }
        Ok(())
    }
}

fn date_of(image: &StoredImage) -> String {
    image
        .properties
        .get(PROMOTED_AT)
        .or(image.created_at.as_ref())
        .map(|t| t.chars().take(10).collect())
        .unwrap_or_else(|| rfc3339(now())[..10].to_string())
}

/// Computes the steps to promote image `candidate` under `policy`, changing nothing.
///
/// `run_id` is who promotes: recorded on the image (`imagekit_promoted_run`) and as the holder of
/// the line's lock. A pipeline passes its run id; outside one, any label that tells your
/// promotions apart (the CLI uses `cli`, [`crate::Imagekit`] its run label). An image already
/// promoted by the same `run_id` is left unchanged, so a resumed promotion is not done twice.
/// Most programs promote through [`crate::Imagekit::promote`], which plans, locks and applies.
pub async fn plan(
    store: &dyn ImageStore,
    candidate: &str,
    policy: &PromotePolicy,
    run_id: &str,
    evidence: &Value,
) -> Result<Plan> {
    if policy.production_name.trim().is_empty() {
        return Err(Error::InvalidInput("the production name is empty".into()));
    }
    let image = store.get(candidate).await?;
    if image.status != "active" {
        return Err(Error::InvalidInput(format!(
            "image {} ({}) is {}, not active: only an uploaded, verified image can be promoted",
            image.id, image.name, image.status
        )));
    }
    let already = image.properties.get(LINE) == Some(&policy.production_name)
        && image.properties.get(STATE).map(String::as_str) == Some("production")
        && image.properties.get(PROMOTED_BY).map(String::as_str) == Some(run_id);
    let at = precise_now();
    let mut steps = vec![if already {
        // Promoted by this very run before (a resumed stage): keep its record and time.
        Step {
            image_id: image.id.clone(),
            name: image.name.clone(),
            action: format!("already promoted by run {run_id}: unchanged"),
            changes: Vec::new(),
            delete: false,
        }
    } else {
        Step {
            image_id: image.id.clone(),
            name: image.name.clone(),
            action: format!(
                "rename to {:?}, {}, record run {run_id}",
                policy.production_name, policy.visibility
            ),
            changes: vec![
                ImageChange::Rename(policy.production_name.clone()),
                ImageChange::Visibility(policy.visibility.as_str().to_string()),
                ImageChange::Hidden(false),
                ImageChange::SetProperty(LINE.into(), policy.production_name.clone()),
                ImageChange::SetProperty(STATE.into(), "production".into()),
                ImageChange::SetProperty(PROMOTED_AT.into(), at),
                ImageChange::SetProperty(PROMOTED_BY.into(), run_id.into()),
                ImageChange::SetProperty(EVIDENCE.into(), evidence.to_string()),
            ],
            delete: false,
        }
    }];
    let line = |state: &str| ImageQuery {
        name: None,
        properties: [
            (LINE.to_string(), policy.production_name.clone()),
            (STATE.to_string(), state.to_string()),
        ]
        .into(),
    };
    let mut rotated = Vec::new();
    for old in store.list(&line("production")).await? {
        if old.id == image.id {
            continue;
        }
        let new_name = format!("{} [{}]", policy.production_name, date_of(&old));
        let mut changes = vec![
            ImageChange::Rename(new_name.clone()),
            ImageChange::SetProperty(STATE.into(), "previous".into()),
        ];
        let how = match policy.rotation {
            Rotation::Hide => {
                changes.push(ImageChange::Hidden(true));
                "hide"
            }
            Rotation::Community => {
                changes.push(ImageChange::Visibility("community".into()));
                "make community"
            }
            Rotation::Rename => "keep visible",
        };
        steps.push(Step {
            image_id: old.id.clone(),
            name: old.name.clone(),
            action: format!("previous production: rename to {new_name:?}, {how}"),
            changes,
            delete: false,
        });
        rotated.push(old);
    }
    let mut previous: Vec<StoredImage> = store
        .list(&line("previous"))
        .await?
        .into_iter()
        .filter(|i| i.id != image.id)
        .collect();
    previous.extend(rotated);
    // Newest first: by promotion date, then creation.
    previous.sort_by(|a, b| {
        let key = |i: &StoredImage| (i.properties.get(PROMOTED_AT).cloned(), i.created_at.clone());
        key(b).cmp(&key(a))
    });
    for old in previous.iter().skip(policy.keep) {
        steps.push(Step {
            image_id: old.id.clone(),
            name: old.name.clone(),
            action: if policy.delete_beyond_keep {
                format!("delete (beyond the newest {} kept)", policy.keep)
            } else {
                format!(
                    "beyond the newest {} kept; not deleted (deletion was not asked)",
                    policy.keep
                )
            },
            changes: Vec::new(),
            delete: policy.delete_beyond_keep,
        });
    }
    Ok(Plan {
        store: store.name(),
        steps,
    })
}

/// Carries out a plan, step by step, in order.
pub async fn apply(store: &dyn ImageStore, plan: &Plan) -> Result<()> {
    for step in &plan.steps {
        if step.delete {
            store.delete(&step.image_id).await?;
        } else if !step.changes.is_empty() {
            store.update(&step.image_id, &step.changes).await?;
        }
    }
    Ok(())
}

/// The property naming the production line a lock marker locks.
pub const LOCK_LINE: &str = "imagekit_lock_line";
/// Who holds a lock marker (a run id, `imagekit promote image`).
pub const LOCK_HOLDER: &str = "imagekit_lock_holder";
/// When a lock marker stops counting (unix seconds): a holder that crashed frees the line then.
pub const LOCK_EXPIRES: &str = "imagekit_lock_expires";
/// `host pid start-ticks` of the holder: a holder on the same host that is gone frees the line at once.
pub const LOCK_PROCESS: &str = "imagekit_lock_process";

/// How long a promotion lock lives unless released: far longer than any promotion (a few metadata
/// changes), short enough that a crashed holder does not block a line for long.
pub const LOCK_TTL: std::time::Duration = std::time::Duration::from_secs(600);

/// The promotion of one line held in an image store, so that promoters that share no journal
/// (two people, two CI jobs) still take turns. Release it with [`LineLock::release`]; one that is
/// dropped (a cancelled promotion) stays until its holder's process is gone or [`LOCK_TTL`] passes.
#[derive(Debug)]
#[must_use = "release the lock when the promotion is done"]
pub struct LineLock<'a> {
    store: &'a dyn ImageStore,
    marker: String,
}

impl LineLock<'_> {
    /// Frees the line.
    pub async fn release(self) -> Result<()> {
        self.store.delete(&self.marker).await
    }
}

/// Takes the promotion lock of `line` in `store`, waiting up to `wait` while another holds it.
///
/// Stores offer no compare-and-set, so this is the create-then-look protocol: the promoter creates
/// a marker (a data-less image record tagged with the line), then lists the line's markers. Alone,
/// it holds the line. Not alone, it deletes its marker and tries again after a random pause. Two
/// promoters cannot both find themselves alone: whoever lists second created its marker before
/// listing, after the first one's marker existed. Markers whose holder is gone or expired are
/// deleted by whoever finds them.
///
/// # Errors
/// [`Error::Locked`] naming the holder when the line is still locked after `wait`; the store's
/// errors otherwise (nothing of ours is left behind then, beyond a marker that expires).
pub async fn lock_line<'a>(
    store: &'a dyn ImageStore,
    line: &str,
    holder: &str,
    wait: std::time::Duration,
) -> Result<LineLock<'a>> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut pause = std::time::Duration::from_millis(50);
    let me = process_tag(std::process::id());
    loop {
        let expires = now().saturating_add(LOCK_TTL.as_secs() as i64);
        let marker = NewImage::new(format!("imagekit promotion lock: {line}"), "raw")
            .property(LOCK_LINE, line)
            .property(LOCK_HOLDER, holder)
            .property(LOCK_EXPIRES, expires.to_string())
            .property(LOCK_PROCESS, me.clone().unwrap_or_default());
        let mine = store.create_record(&marker).await?;
        let query = ImageQuery {
            name: None,
            properties: [(LOCK_LINE.to_string(), line.to_string())].into(),
        };
        let listed = match store.list(&query).await {
            Ok(l) => l,
            Err(e) => {
                let _ = store.delete(&mine.id).await;
                return Err(e);
            }
        };
        let mut other = None;
        for m in listed.into_iter().filter(|m| m.id != mine.id) {
            if marker_is_dead(&m) {
                tracing::warn!(line, marker = %m.id, holder = ?m.properties.get(LOCK_HOLDER), "deleting a dead promotion lock");
                if let Err(e) = store.delete(&m.id).await {
                    tracing::warn!(marker = %m.id, error = %e, "could not delete a dead promotion lock");
                }
                continue;
            }
            other = Some(m);
        }
        let Some(other) = other else {
            return Ok(LineLock { store, marker: mine.id });
        };
        store.delete(&mine.id).await?;
        if tokio::time::Instant::now() + pause > deadline {
            return Err(Error::Locked {
                what: format!("the promotion of {line:?} in {}", store.name()),
                holder: other
                    .properties
                    .get(LOCK_HOLDER)
                    .cloned()
                    .unwrap_or_else(|| other.id.clone()),
                hint: format!(
                    "still held after waiting {wait:?}; try again when it is done (a crashed holder's \
                     lock, image {}, expires by itself)",
                    other.id
                ),
            });
        }
        // Random, so that two promoters who saw each other do not meet again.
        let jitter = rand::random_range(0.5..1.5);
        tokio::time::sleep(pause.mul_f64(jitter)).await;
        pause = (pause * 2).min(std::time::Duration::from_secs(2));
    }
}

/// `host pid start` of a process on this host, when /proc says (the journal's lock holders are
/// identified the same way).
fn process_tag(pid: u32) -> Option<String> {
    let start = crate::journal::process_start(pid)?;
    Some(format!("{} {pid} {start}", crate::journal::host_name()))
}

/// A marker past its expiry, or whose holder ran on this host and is gone.
fn marker_is_dead(m: &StoredImage) -> bool {
    let expired = m
        .properties
        .get(LOCK_EXPIRES)
        .and_then(|e| e.parse::<i64>().ok())
        .is_none_or(|e| e <= now());
    let gone = m.properties.get(LOCK_PROCESS).is_some_and(|tag| {
        let mut parts = tag.split(' ');
        match (parts.next(), parts.next().and_then(|p| p.parse::<u32>().ok())) {
            (Some(host), Some(pid)) if host == crate::journal::host_name() => {
                process_tag(pid).as_deref() != Some(tag.as_str())
            }
            _ => false,
        }
    });
    expired || gone
}

/// Promotes `candidate` while holding the line's lock in the store: plans against the store as it
/// is once the lock is held (a promoter that waited re-plans, so it rotates the image promoted
/// meanwhile), applies, and releases the lock. Two promoters of one line never both end up with a
/// production image.
///
/// Kept as the building block the pipeline and the CLI use; scripts use
/// [`crate::Imagekit::promote`].
///
/// # Errors
/// As [`plan`], [`apply`] and [`lock_line`]. The lock is released on every error.
pub async fn promote(
    store: &dyn ImageStore,
    candidate: &str,
    policy: &PromotePolicy,
    run_id: &str,
    evidence: &Value,
    wait: std::time::Duration,
) -> Result<Plan> {
    let lock = lock_line(store, &policy.production_name, run_id, wait).await?;
    let result = async {
        let steps = plan(store, candidate, policy, run_id, evidence).await?;
        apply(store, &steps).await?;
        Ok::<_, Error>(steps)
    }
    .await;
    let released = lock.release().await;
    let steps = result?;
    released?;
    Ok(steps)
}
