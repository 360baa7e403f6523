"""Dedup on a Slurm cluster with datatrove's SlurmPipelineExecutor: the four stages of
``thresher.curation.datatrove_steps``, each a job array that waits for the previous one.

NOT RUN by the project: no Slurm is available where Thresher is developed (the same steps are tested on
datatrove's local executor and, through ``thresher dedup --executor ray``, on a real local Ray cluster).
Adapt the paths, partition and sizes, then ``python examples/cluster/slurm_dedup.py`` on a login node.

- Stage 1 (``DedupSignatures``) and 4 (``DedupFilter``) run over the same ``TASKS`` tasks with the same reader
  (the filter matches decisions to documents by their order in the task).
- Stage 2 (``DedupBuckets``) runs up to ``BAND_SHARDS`` tasks: each holds its bands' keys (8 bytes per document and
  band), not the signatures.
- Stage 3 (``DedupClusters``) is one task whose memory grows with the candidate pairs and ~24 bytes per document.
"""

from datatrove.executor.slurm import SlurmPipelineExecutor
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter

from thresher.curation.datatrove_steps import DedupBuckets, DedupClusters, DedupFilter, DedupSignatures
from thresher.curation.dedup import DedupConfig

DOCUMENTS = "s3://my-bucket/corpus/"  # JSONL documents with "text" (and "id", "metadata.source")
WORK = "s3://my-bucket/dedup-work/"  # stage files: features, signatures, bands, pairs, decisions
OUTPUT = "s3://my-bucket/deduplicated/"
LOGS = "/shared/logs/dedup"
TASKS, BAND_SHARDS = 1000, 16
CONFIG = DedupConfig(method="minhash", threshold=0.8)
SLURM = dict(partition="cpu", time="12:00:00", cpus_per_task=2, mem_per_cpu_gb=4, venv_path="/shared/venvs/thresher/bin/activate")

signatures = SlurmPipelineExecutor(
    [JsonlReader(DOCUMENTS), DedupSignatures(WORK, CONFIG, band_shards=BAND_SHARDS)],
    tasks=TASKS,
    job_name="dedup-signatures",
    logging_dir=f"{LOGS}/signatures",
    **SLURM,
)
buckets = SlurmPipelineExecutor(
    [DedupBuckets(WORK, CONFIG)], tasks=BAND_SHARDS, job_name="dedup-buckets", logging_dir=f"{LOGS}/buckets", depends=signatures, **SLURM
)
clusters = SlurmPipelineExecutor(
    [DedupClusters(WORK, CONFIG)],
    tasks=1,
    job_name="dedup-clusters",
    logging_dir=f"{LOGS}/clusters",
    depends=buckets,
    **{**SLURM, "mem_per_cpu_gb": 32},
)
SlurmPipelineExecutor(
    [
        JsonlReader(DOCUMENTS),
        DedupFilter(WORK, exclusion_writer=JsonlWriter(f"{OUTPUT}/removed")),
        JsonlWriter(f"{OUTPUT}/kept"),
    ],
    tasks=TASKS,
    job_name="dedup-filter",
    logging_dir=f"{LOGS}/filter",
    depends=clusters,
    **SLURM,
).run()
