"""Checkpoint → short program: LLN-A (`linearise`), the full path program (`paths`), masked
circuits (`circuit`), pruning (`prune`) and its sparsity sweep (`sweep`), the circuit as a program
(`circuit_program`), primitives (`primitives`, `replace`), models written by `rasp compile`
(`compiled`), and the driver (`extract`)."""
