"""Decontamination on a Slurm cluster with datatrove's SlurmPipelineExecutor: ``DecontamIndex`` (one task: the
benchmark items, and their embeddings with the embedding method, written once) then ``DecontamFilter`` (a job array
over the documents: contaminated documents go to ``removed/`` with the benchmark, item, method, score and evidence in
their metadata, the rest to ``clean/``).

NOT RUN by the project: no Slurm is available where Thresher is developed. The same steps run on datatrove's local
executor in tests/test_decontam_datatrove.py, and ``thresher decontaminate --executor ray`` runs the audit's scan on a
real local Ray cluster (tests/test_decontam_executors.py). Adapt the paths, partition and sizes, then
``python examples/cluster/slurm_decontaminate.py`` on a login node.

The filter decides each document as it streams: the training-side n-gram cap and the counts behind shared text see
the documents a task has read so far, not the whole corpus. For decisions over the whole corpus (the same bytes as
one process), use ``thresher decontaminate --executor ray`` on a Ray cluster instead.
"""

from datatrove.executor.slurm import SlurmPipelineExecutor
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter

from thresher.decontam.audit import AuditConfig
from thresher.decontam.datatrove_steps import DecontamFilter, DecontamIndex

DOCUMENTS = "s3://my-bucket/sft-corpus/"  # JSONL documents with "text"
INDEX = "/shared/decontam-index/"  # the benchmark items (and their embedding cache): storage every node sees
OUTPUT = "s3://my-bucket/decontaminated/"
LOGS = "/shared/logs/decontam"
BENCHMARKS = ["gsm8k=/shared/benchmarks/gsm8k/test.jsonl", "math=/shared/benchmarks/math/math_test.jsonl", "humaneval", "mmlu"]
TASKS = 500
CONFIG = AuditConfig(methods=("ngram", "minhash"))
SLURM = dict(partition="cpu", time="6:00:00", cpus_per_task=2, mem_per_cpu_gb=4, venv_path="/shared/venvs/thresher/bin/activate")

index = SlurmPipelineExecutor(
    [DecontamIndex(INDEX, BENCHMARKS, config=CONFIG)], tasks=1, job_name="decontam-index", logging_dir=f"{LOGS}/index", **SLURM
)
SlurmPipelineExecutor(
    [
        JsonlReader(DOCUMENTS),
        DecontamFilter(INDEX, CONFIG, exclusion_writer=JsonlWriter(f"{OUTPUT}/removed")),
        JsonlWriter(f"{OUTPUT}/clean"),
    ],
    tasks=TASKS,
    job_name="decontam-filter",
    logging_dir=f"{LOGS}/filter",
    depends=index,
    **SLURM,
).run()
