//! The HTTP exchanges of one activation with its container: `/init` when the container is
//! fresh, then `/run`, each under the action's time limit, mapped to an activation response.

use std::time::Duration;

use brisk_model::{ActivationResponse, StatusCode, now_millis};

use crate::invoker::{Handle, Invoker};
use crate::job::{self, CodeRef, Job, MAX_RESULT, RunFacts};

/// OpenWhisk's message for an activation killed for exceeding its memory limit.
pub(crate) const OOM: &str = "The action exhausted its memory and was aborted.";

/// Outcome of init + run before logs are attached.
pub(crate) struct Outcome {
    pub response: ActivationResponse,
    pub facts: RunFacts,
    /// A reused container answered 503 (shutting down): run the activation elsewhere.
    pub retry_elsewhere: bool,
    /// The run wrote no output and the proxy sent no sentinels: nothing to collect.
    pub quiet: bool,
    /// How long a run queued behind another waited for it to end; `None` when unknown (it
    /// was answered before the end of the run ahead was seen), so its own run time is too.
    pub queued: Option<Duration>,
    /// The proxy answered the run (it goes on to a run queued behind, if any).
    pub answered: bool,
}

impl Outcome {
    /// An init or run that failed with `response`, ending now.
    fn failed(response: ActivationResponse, facts: &RunFacts) -> Self {
        Self {
            response,
            facts: RunFacts {
                end_ms: now_millis(),
                ..*facts
            },
            retry_elsewhere: false,
            quiet: false,
            queued: Some(Duration::ZERO),
            answered: false,
        }
    }

    /// A developer error with `msg`, ending now.
    fn developer_error(facts: &RunFacts, msg: String) -> Self {
        Self::failed(
            ActivationResponse::error(StatusCode::DeveloperError, msg),
            facts,
        )
    }
}

/// Should the run ahead of a queued one outlast its own time limit by this much (its
/// activation failed to end it), the queued run's time limit starts counting anyway.
const TURN_SLACK: Duration = Duration::from_secs(2);
/// Header of a run queued behind another: when the invoker sent it, in ms since the epoch
/// (docs/runtime-protocol.md).
const SENT_HEADER: &str = "X-Brisk-Sent";

impl Invoker {
    /// `behind`: the run is queued behind another one of the container (`Placement::Warm`
    /// with `behind`); its time limit counts from the end of that one, and if that one ends
    /// unanswered, this one never started and moves on (`retry_elsewhere`).
    pub(crate) async fn init_and_run(
        &self,
        job: &Job,
        slot: &Handle,
        init: bool,
        behind: bool,
    ) -> Outcome {
        let limits = job.action.limits;
        let timeout = Duration::from_millis(limits.timeout);
        let start_ms = now_millis();
        let mut facts = RunFacts {
            start_ms,
            ..RunFacts::default()
        };
        if init && let Err(out) = self.init(job, slot, &mut facts).await {
            return out;
        }
        let sent = now_millis();
        let body = job::run_body(job, sent + limits.timeout);
        let mut turn = slot.turns.begin();
        // A queued run's deadline moves by the time it waits for the run ahead: a proxy that
        // reads it only when it starts it (Python's) learns that wait from when it was sent.
        let queued_head = behind.then(|| format!("{SENT_HEADER}: {sent}\r\n"));
        let exchange = slot.client.post_with(
            "/run",
            queued_head.as_deref().unwrap_or(""),
            body,
            MAX_RESULT,
        );
        tokio::pin!(exchange);
        let mut queued = Some(Duration::ZERO);
        let mut early = None;
        if behind {
            let t0 = std::time::Instant::now();
            let ahead = tokio::select! {
                biased;
                r = &mut exchange => {
                    // Answered: the run ahead did end. Failed: whether this run ever started
                    // depends on how the run ahead ended, which its activation learns at once
                    // (the container is gone).
                    let ahead = match &r {
                        Ok(_) => true,
                        Err(_) => tokio::time::timeout(
                            TURN_SLACK,
                            slot.turns.ahead_ended(turn.ticket),
                        )
                        .await
                        .unwrap_or(true),
                    };
                    early = Some(r);
                    ahead
                }
                a = slot.turns.ahead_ended(turn.ticket) => a,
                // The run ahead outlasted its own limit: count this one's from now.
                () = tokio::time::sleep(timeout + TURN_SLACK) => true,
            };
            if early.is_none() {
                queued = Some(t0.elapsed());
                facts.start_ms = now_millis();
            } else {
                // Answered before the end of the run ahead was seen: when it started is unknown.
                queued = None;
            }
            if !ahead {
                tracing::debug!("the run ahead ended unanswered; placing the activation again");
                return Outcome {
                    retry_elsewhere: true,
                    queued,
                    ..Outcome::failed(
                        ActivationResponse::error(
                            StatusCode::WhiskError,
                            "The action's container failed before the run began.",
                        ),
                        &facts,
                    )
                };
            }
        }
        let res = match early {
            Some(r) => Ok(r),
            None => tokio::time::timeout(timeout, exchange).await,
        };
        let out = match res {
            Err(_) => {
                facts.timeout = true;
                Outcome::developer_error(&facts, job::timeout_message(limits.timeout, false))
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "run exchange failed");
                // A reused container whose proxy no longer accepts connections died while idle:
                // the request never reached it, so the activation may run elsewhere.
                let never_sent = matches!(e, crate::Error::Connect { .. });
                let msg = if slot.container.oom_kills() > 0 {
                    OOM
                } else {
                    "The action did not produce a valid response and exited unexpectedly."
                };
                Outcome {
                    retry_elsewhere: never_sent && !init,
                    ..Outcome::developer_error(&facts, msg.into())
                }
            }
            Ok(Ok(resp)) => {
                turn.answered();
                Outcome {
                    response: job::classify_run(&resp),
                    facts: RunFacts {
                        end_ms: now_millis(),
                        ..facts
                    },
                    retry_elsewhere: resp.status == 503 && !init,
                    quiet: resp.quiet,
                    queued: Some(Duration::ZERO),
                    answered: true,
                }
            }
        };
        Outcome { queued, ..out }
    }

    /// `/init` of a fresh container under the action's time limit; `Err` is the activation's
    /// outcome when it fails. Records `initTime` in `facts`.
    pub(crate) async fn init(
        &self,
        job: &Job,
        slot: &Handle,
        facts: &mut RunFacts,
    ) -> Result<(), Outcome> {
        let limits = job.action.limits;
        let timeout = Duration::from_millis(limits.timeout);
        let t0 = std::time::Instant::now();
        let body = match self
            .init_body(job, slot, facts.start_ms + limits.timeout)
            .await
        {
            Ok(b) => b,
            Err(msg) => return Err(Outcome::developer_error(facts, msg)),
        };
        let res = tokio::time::timeout(timeout, slot.client.post("/init", body, MAX_RESULT)).await;
        facts.init_time_ms = Some(t0.elapsed().as_millis() as u64);
        match res {
            Err(_) => {
                facts.timeout = true;
                Err(Outcome::developer_error(
                    facts,
                    job::timeout_message(limits.timeout, true),
                ))
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "init exchange failed");
                let msg = if slot.container.oom_kills() > 0 {
                    OOM
                } else {
                    "The action did not initialize and exited unexpectedly."
                };
                Err(Outcome::developer_error(facts, msg.into()))
            }
            Ok(Ok(resp)) => {
                job::classify_init(&resp).map_err(|response| Outcome::failed(response, facts))
            }
        }
    }

    /// The `/init` body; zipped code is unpacked into the container's directory first.
    async fn init_body(&self, job: &Job, slot: &Handle, deadline: u64) -> Result<Vec<u8>, String> {
        let concurrent = job.action.limits.concurrency > 1;
        let exec = &job.action.exec;
        match exec.code() {
            Some(_) if exec.binary() => {
                let dir = slot.container.dir().join("code");
                let action = job.action.clone();
                let target = dir.clone();
                let cache = self.code_cache.clone();
                let unpacked = tokio::task::spawn_blocking(move || {
                    cache.materialize(&action, action.exec.code().unwrap_or(""), &target)
                })
                .await;
                match unpacked {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        return Err(format!("Initialization has failed due to: {e}"));
                    }
                    Err(e) => return Err(format!("Initialization has failed due to: {e}")),
                }
                let dir = dir.to_string_lossy();
                Ok(job::init_body(
                    job,
                    CodeRef::Dir(&dir),
                    deadline,
                    concurrent,
                ))
            }
            Some(code) => Ok(job::init_body(
                job,
                CodeRef::Inline {
                    code,
                    binary: false,
                },
                deadline,
                concurrent,
            )),
            None => Ok(job::init_body(job, CodeRef::None, deadline, concurrent)),
        }
    }
}
