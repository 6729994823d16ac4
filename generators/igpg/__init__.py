"""IGPG (instruction-guided parameter generation), first stage: VQ weight tokens.

Networks are cut into fixed-size chunks (:class:`generators.tokenizer.WeightTokenizer`,
``per_neuron=False``); every chunk carries a descriptor of where it sits
(:mod:`.descriptors`: layer kind, shape, depth, output layer or not, chunk index), and a
vector-quantized autoencoder (:class:`.vqvae.ChunkVQVAE`) maps each chunk to one code of
a shared codebook. Because chunks are coded independently, given their descriptors, one
codebook serves every architecture: a network of any of them is a sequence of code
indices whose length follows the architecture.

Not yet built (issue 16): the training stage with the behaviour loss, the autoregressive
prior over code indices, instruction and data conditioning, the pipeline and its command.
"""
from .descriptors import DESCRIPTOR_FIELDS, chunk_descriptors
from .vqvae import ChunkVQVAE, codebook_usage

__all__ = ["DESCRIPTOR_FIELDS", "chunk_descriptors", "ChunkVQVAE", "codebook_usage"]
