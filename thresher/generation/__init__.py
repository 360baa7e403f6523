"""One generation stack for synthesis and RLVR rollouts: ``SamplingParams`` (one sampling type), token-level
engines (``TransformersEngine``, ``VLLMEngine``: left-padding, n samples per prompt, cutting at end of sequence,
seeding, the sampler's own log-probs), and the chat layer synthesis puts on top (``synth.backends``)."""
