"""Airflow DAG: publish features and score daily; monitor and retrain-if-drifted weekly.

Copy into Airflow's dags/ folder; set the Airflow Variables `crmscore_home` (the project checkout with its
.venv and .env) and `crmscore_config` (a config path relative to it). Each task is one `crmscore` command,
so the same steps run by hand or from cron (examples/crontab.txt). `crmscore retrain` exits 0 whether it
promotes, refuses or skips; every decision is recorded on the model version (tags retrain_*).
"""

from __future__ import annotations

import pendulum
from airflow import DAG
from airflow.operators.bash import BashOperator

HOME = "{{ var.value.crmscore_home }}"
CONFIG = "{{ var.value.crmscore_config }}"
CLI = f"cd {HOME} && .venv/bin/crmscore"

with DAG(
    dag_id="crmscore_daily_scores",
    schedule="0 2 * * *",
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["crmscore"],
) as daily:
    publish = BashOperator(task_id="publish_features", bash_command=f"{CLI} features publish --config {CONFIG}")
    score = BashOperator(task_id="score_churn",
                         bash_command=f"{CLI} score churn --config {CONFIG} --out out/scores/churn-{{{{ ds }}}}.parquet")
    publish >> score

with DAG(
    dag_id="crmscore_weekly_monitoring",
    schedule="0 4 * * 1",
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["crmscore"],
) as weekly:
    monitor = BashOperator(
        task_id="monitor",
        bash_command=f"{CLI} monitor --config {CONFIG} --scores 'out/scores/*.parquet' --out out/monitor/{{{{ ds }}}}")
    retrain = BashOperator(
        task_id="retrain_if_drifted",
        bash_command=f"CRMSCORE_USER=airflow {CLI} retrain --all --if-drifted --config {CONFIG} "
                     f"--scores 'out/scores/*.parquet' --json",
    )
    monitor >> retrain
