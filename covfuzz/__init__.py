"""covfuzz: a coverage-guided, mutational fuzzer for torch.compile."""

__version__ = "0.1.0"
