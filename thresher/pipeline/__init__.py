"""``thresher run PIPELINE.yaml``: curate → audit/decontaminate → mix → synth → SFT → DPO → RLVR as cached,
resumable stages with one report."""
