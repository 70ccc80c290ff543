//! A small client for the parts of Label Studio's REST API that the live
//! queue ([`super::live`]) uses: projects, tasks, bulk prediction import,
//! model versions, ML backends, webhooks and Data Manager views.
//!
//! It authenticates as Label Studio's own SDK does: a legacy token is sent
//! as `Authorization: Token KEY`; a personal access token (a JWT refresh
//! token) is first exchanged at `/api/token/refresh` for an access token,
//! sent as `Bearer`. Every failure is an [`Error::LabelStudio`] that names
//! the server, the request and what Label Studio answered.

use std::time::Duration;

use serde_json::{Value, json};

use crate::error::{Error, Result};

/// Tasks per page when listing a project (Label Studio's own page limit is
/// far above this; larger pages make fewer, slower requests).
const PAGE: usize = 5000;

/// A Label Studio server and an API key.
pub struct Studio {
    base: String,
    auth: String,
    agent: ureq::Agent,
}

impl Studio {
    /// Connects to `url` with `key`; `timeout` bounds each request.
    pub fn new(url: &str, key: &str, timeout: Duration) -> Result<Studio> {
        let agent = ureq::AgentBuilder::new().timeout(timeout).build();
        let base = url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::LabelStudio {
                url: base,
                reason: "the URL must start with http:// or https://".into(),
            });
        }
        let mut studio = Studio {
            base,
            auth: format!("Token {key}"),
            agent,
        };
        // A personal access token is a JWT: three base64 parts.
        if key.split('.').count() == 3 {
            let access =
                studio.call("POST", "/api/token/refresh", Some(&json!({"refresh": key})))?;
            let token = access
                .get("access")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    studio.fail("/api/token/refresh", "no access token in the answer")
                })?;
            studio.auth = format!("Bearer {token}");
        }
        Ok(studio)
    }

    /// The server's address.
    pub fn url(&self) -> &str {
        &self.base
    }

    fn fail(&self, path: &str, reason: impl Into<String>) -> Error {
        Error::LabelStudio {
            url: format!("{}{}", self.base, path.split('?').next().unwrap_or(path)),
            reason: reason.into(),
        }
    }

    /// One request; the answer's JSON (`null` for an empty body).
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let req = self
            .agent
            .request(method, &format!("{}{path}", self.base))
            .set("Authorization", &self.auth)
            .set("Content-Type", "application/json");
        let answer = match body {
            Some(b) => req.send_string(&b.to_string()),
            None => req.call(),
        };
        let text = match answer {
            Ok(r) => r
                .into_string()
                .map_err(|e| self.fail(path, format!("the answer could not be read: {e}")))?,
            Err(ureq::Error::Status(code, r)) => {
                let said = r.into_string().unwrap_or_default();
                let said: String = said.chars().take(400).collect();
                let reason = match code {
                    401 | 403 => format!(
                        "HTTP {code}: the API key was refused (--api-key or LABEL_STUDIO_API_KEY: Label Studio → Account & Settings → Access Token): {said}"
                    ),
                    _ => format!("HTTP {code}: {said}"),
                };
                return Err(self.fail(path, reason));
            }
            Err(e) => return Err(self.fail(path, format!("no answer: {e}"))),
        };
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| self.fail(path, format!("not JSON: {e}")))
    }

    /// The project's settings (404: no such project, or not visible with
    /// this key).
    pub fn project(&self, id: i64) -> Result<Value> {
        self.call("GET", &format!("/api/projects/{id}"), None)
            .map_err(|e| match e {
                Error::LabelStudio { url, reason } if reason.starts_with("HTTP 404") => {
                    Error::LabelStudio {
                        url,
                        reason: format!(
                            "project {id} does not exist (or this API key cannot see it)"
                        ),
                    }
                }
                e => e,
            })
    }

    /// Every task of the project, as `(task id, data)`, page by page.
    pub fn tasks(
        &self,
        project: i64,
        each: &mut dyn FnMut(i64, &Value) -> Result<()>,
    ) -> Result<()> {
        for page in 1.. {
            let path = format!(
                "/api/tasks?project={project}&page_size={PAGE}&page={page}&fields=task_only&include=id,data"
            );
            let answer = match self.call("GET", &path, None) {
                // Past the last page.
                Err(Error::LabelStudio { reason, .. }) if reason.starts_with("HTTP 404") => break,
                r => r?,
            };
            let tasks = answer
                .get("tasks")
                .and_then(Value::as_array)
                .ok_or_else(|| self.fail(&path, "no tasks list in the answer"))?;
            for t in tasks {
                let id = t
                    .get("id")
                    .and_then(Value::as_i64)
                    .ok_or_else(|| self.fail(&path, "a task without an id"))?;
                each(id, t.get("data").unwrap_or(&Value::Null))?;
            }
            if tasks.len() < PAGE {
                break;
            }
        }
        Ok(())
    }

    /// Imports tasks (`[{"data": …}, …]`).
    pub fn import_tasks(&self, project: i64, tasks: &[Value]) -> Result<()> {
        let path = format!("/api/projects/{project}/import");
        self.call("POST", &path, Some(&Value::Array(tasks.to_vec())))?;
        Ok(())
    }

    /// Imports predictions (`[{"task": id, "score": s, "model_version": v,
    /// "result": …}, …]`); returns how many Label Studio created.
    pub fn import_predictions(&self, project: i64, predictions: Vec<Value>) -> Result<u64> {
        let path = format!("/api/projects/{project}/import/predictions");
        let answer = self.call("POST", &path, Some(&Value::Array(predictions)))?;
        answer
            .get("created")
            .and_then(Value::as_u64)
            .ok_or_else(|| self.fail(&path, format!("unexpected answer {answer}")))
    }

    /// How many predictions of each model version the project holds.
    pub fn version_counts(&self, project: i64) -> Result<serde_json::Map<String, Value>> {
        let path = format!("/api/projects/{project}/model-versions");
        match self.call("GET", &path, None)? {
            Value::Object(m) => Ok(m),
            other => Err(self.fail(&path, format!("unexpected answer {other}"))),
        }
    }

    /// Deletes every prediction of one model version.
    pub fn delete_version(&self, project: i64, version: &str) -> Result<()> {
        let path = format!("/api/projects/{project}/model-versions");
        self.call("DELETE", &path, Some(&json!({ "model_version": version })))?;
        Ok(())
    }

    /// Changes project settings; returns the project as it is now.
    pub fn update_project(&self, project: i64, fields: &Value) -> Result<Value> {
        self.call("PATCH", &format!("/api/projects/{project}"), Some(fields))
    }

    /// Lists the project's objects of one kind (`ml`, `webhooks`).
    pub fn list(&self, kind: &str, project: i64) -> Result<Vec<Value>> {
        let path = format!("/api/{kind}?project={project}");
        match self.call("GET", &path, None)? {
            Value::Array(a) => Ok(a),
            other => Err(self.fail(&path, format!("unexpected answer {other}"))),
        }
    }

    /// Creates an object of one kind (`ml`, `webhooks`, `dm/views`).
    pub fn create(&self, kind: &str, body: &Value) -> Result<Value> {
        self.call("POST", &format!("/api/{kind}"), Some(body))
    }

    /// The Data Manager views (tabs) of the project.
    pub fn views(&self, project: i64) -> Result<Vec<Value>> {
        self.list("dm/views", project)
    }
}
