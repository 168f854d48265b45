"""Airflow DAGs for the nightly audience run (Airflow 3).

- ``audience_nightly`` (production): one KubernetesPodOperator pod per logical
  date in the ``audience`` namespace, with the image, service account (workload
  identity) and ConfigMaps of ``k8s/``. Scheduled at 03:00 UTC for the day before:
  the data interval is that day, so ``{{ ds }}`` is the day the audiences are for.
- ``audience_local``: the same run on this machine with the CLI (no cluster), for
  development and CI: ``airflow dags test audience_local 2026-06-01``. The binary
  is ``$AUDIENCE_BIN`` (default ``audience`` on PATH), the config
  ``$AUDIENCE_LOCAL_CONFIG`` (default ``configs/demo.toml`` of this checkout).

Both retry only exit code 3 (transient: storage, network). 1 (a bug), 2 (bad
input or config) and 4 (a conflicting committed run) fail the task at once: a
retry cannot fix them. A rerun of a committed date exits 0, so retries are safe.
"""

from __future__ import annotations

import os
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

from airflow.exceptions import AirflowException, AirflowFailException
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk import DAG, task
from airflow.timetables.interval import CronDataIntervalTimetable
from kubernetes.client import models as k8s

TRANSIENT_EXIT_CODE = 3
EXIT_CODES = {
    1: "internal error",
    2: "invalid input, config or arguments",
    3: "transient failure",
    4: "conflict with a committed run",
}
REPO = Path(__file__).resolve().parents[2]
DEFAULT_ARGS = {"retries": 3, "retry_delay": timedelta(minutes=2), "retry_exponential_backoff": True}


def final_unless_transient(code: int) -> None:
    """Raises the exception that makes Airflow retry (3) or fail at once (others)."""
    meaning = EXIT_CODES.get(code, "unknown exit code")
    if code == TRANSIENT_EXIT_CODE:
        raise AirflowException(f"audience exited with {code} ({meaning}): will retry")
    raise AirflowFailException(f"audience exited with {code} ({meaning}): not retried")


def base_exit_code(remote_pod, container: str) -> int | None:
    statuses = (remote_pod.status.container_statuses if remote_pod and remote_pod.status else None) or []
    status = next((s for s in statuses if s.name == container), None)
    terminated = status.state.terminated if status and status.state else None
    return terminated.exit_code if terminated else None


class AudiencePodOperator(KubernetesPodOperator):
    """A KubernetesPodOperator whose failures are retried only for exit code 3."""

    def cleanup(self, pod, remote_pod, *args, **kwargs):
        try:
            return super().cleanup(pod, remote_pod, *args, **kwargs)
        except AirflowFailException:
            raise
        except AirflowException:
            code = base_exit_code(remote_pod, self.base_container_name)
            if code is None:
                raise  # no exit code (evicted, image pull): let Airflow retry
            final_unless_transient(code)


with DAG(
    dag_id="audience_nightly",
    description="Score, allocate and commit the day's audiences on the Ballista cluster",
    schedule=CronDataIntervalTimetable("0 3 * * *", timezone="UTC"),
    start_date=datetime(2026, 6, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["audience"],
):
    AudiencePodOperator(
        task_id="run",
        name="audience-run",
        namespace="audience",
        image="ghcr.io/audience/audience:0.1.0",
        service_account_name="audience",
        arguments=["run", "--config=/etc/audience/audience.toml", "--date={{ ds }}"],
        env_from=[k8s.V1EnvFromSource(config_map_ref=k8s.V1ConfigMapEnvSource(name="audience-locations"))],
        env_vars={"RUST_LOG": "info"},
        volumes=[
            k8s.V1Volume(name="config", config_map=k8s.V1ConfigMapVolumeSource(name="audience-config")),
        ],
        volume_mounts=[k8s.V1VolumeMount(name="config", mount_path="/etc/audience", read_only=True)],
        container_resources=k8s.V1ResourceRequirements(
            requests={"cpu": "2", "memory": "8Gi"}, limits={"memory": "12Gi"}
        ),
        security_context=k8s.V1PodSecurityContext(run_as_non_root=True, run_as_user=10001),
        labels={"app.kubernetes.io/part-of": "audience", "app.kubernetes.io/name": "audience-job"},
        on_finish_action="delete_succeeded_pod",
        get_logs=True,
        execution_timeout=timedelta(hours=6),
    )


with DAG(
    dag_id="audience_local",
    description="The nightly run on this machine with the CLI (development, CI)",
    schedule=None,
    start_date=datetime(2026, 6, 1),
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=["audience"],
):

    @task(task_id="run")
    def run_local(ds=None):
        binary = os.environ.get("AUDIENCE_BIN", "audience")
        config = os.environ.get("AUDIENCE_LOCAL_CONFIG", str(REPO / "configs" / "demo.toml"))
        command = [binary, "run", "--config", config, "--date", ds]
        print("running", " ".join(command), flush=True)
        completed = subprocess.run(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
        if completed.returncode != 0:
            final_unless_transient(completed.returncode)
        manifest = completed.stdout.strip()
        print("committed:", manifest, flush=True)
        return manifest

    run_local()
