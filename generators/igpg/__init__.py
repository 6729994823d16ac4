"""IGPG (instruction-guided parameter generation), first stage: VQ weight tokens.

Networks are cut into fixed-size chunks (:class:`generators.tokenizer.WeightTokenizer`,
``per_neuron=False``); every chunk carries a descriptor of where it sits
(:mod:`.descriptors`: layer kind, shape, depth, output layer or not, chunk index), and a
vector-quantized autoencoder (:class:`.vqvae.ChunkVQVAE`) maps each chunk to one code of
a shared codebook. Because chunks are coded independently, given their descriptors, one
codebook serves every architecture: a network of any of them is a sequence of code
indices whose length follows the architecture.

:func:`.vq_stage.train_chunk_vq` trains one such model on the zoos of several
architectures (batches of one architecture at a time, in turn; structure + commitment +
behaviour loss; resumable).

Not yet built (issue 16): a VQ round trip that keeps the networks' accuracy (measured so
far: far from it, see the generators guide), the autoregressive prior over code indices,
instruction and data conditioning, the pipeline and its command.
"""
from .descriptors import DESCRIPTOR_FIELDS, chunk_descriptors
from .vq_stage import VQ_DEFAULTS, MixedBatches, VQStage, train_chunk_vq
from .vqvae import ChunkVQVAE, codebook_usage

__all__ = ["DESCRIPTOR_FIELDS", "chunk_descriptors", "ChunkVQVAE", "codebook_usage", "VQ_DEFAULTS", "MixedBatches",
           "VQStage", "train_chunk_vq"]
