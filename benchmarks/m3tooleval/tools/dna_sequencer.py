"""Domain ``cryptobotanists_plant_dna_sequencer`` (TOOLS_SPEC.md section 2).

The codon table and the two transcription maps come from the shared data file and are
embedded into each tool's source. Dict key order is part of the contract (the judge
compares ``str()`` of a dict), so counting keeps first-occurrence order.
"""

from __future__ import annotations

import builtins as _m3_builtins
from typing import Any

from ._build import BUILTINS_IMPORT, JSON_IMPORT, assemble, json_constant

# Filled in by each tool's prelude inside the sandbox; empty placeholders here.
_m3_dna_tables: dict[str, Any] = {}


def count_nucleotides(dna_sequence):
    """Count every character, keys in order of first occurrence."""
    counts = {}
    for char in dna_sequence:
        counts[char] = counts.get(char, 0) + 1
    return counts


def transcribe_dna_to_mrna(dna_sequence):
    """Complementary transcription A->U, C->G, G->C, T->A; other characters unchanged."""
    mapping = _m3_dna_tables["dna_to_mrna_transcription_map"]
    return "".join(mapping.get(char, char) for char in dna_sequence)


def translate_mrna_to_amino_acid(mrna_sequence):
    """Translate codons (chunks of 3 from index 0) and join them with '-'; unknown -> 'X'."""
    table = _m3_dna_tables["codon_to_amino_acid"]
    unknown = _m3_dna_tables["unknown_codon_symbol"]
    codons = [mrna_sequence[i : i + 3] for i in range(0, len(mrna_sequence), 3)]
    return _m3_dna_tables["amino_acid_separator"].join(table.get(c, unknown) for c in codons)


def find_max_nucleotide(*args):
    """From ``k1, v1, k2, v2, ...`` return the (key, value) pair with the largest value."""
    counts = dict(zip(args[::2], args[1::2], strict=False))  # odd count: last key dropped
    return _m3_builtins.max(counts.items(), key=lambda item: item[1])


def is_valid_dna_sequence(dna_sequence):
    """True iff every character is one of A, C, G, T (the empty string is valid)."""
    alphabet = _m3_dna_tables["valid_dna_alphabet"]
    return all(char in alphabet for char in dna_sequence)


def reverse_transcribe_mrna_to_dna(mrna_sequence):
    """Reverse transcription U->A, C->G, A->T, G->C; other characters unchanged."""
    mapping = _m3_dna_tables["mrna_to_dna_reverse_transcription_map"]
    return "".join(mapping.get(char, char) for char in mrna_sequence)


def build_sources(data: dict[str, Any]) -> dict[str, str]:
    """Tool name -> self-contained source, each embedding the domain's tables."""
    tables = json_constant("_m3_dna_tables", data["data_tables"])
    with_tables = (
        transcribe_dna_to_mrna,
        translate_mrna_to_amino_acid,
        is_valid_dna_sequence,
        reverse_transcribe_mrna_to_dna,
    )
    sources = {f.__name__: assemble(preamble=[JSON_IMPORT, tables], tool=f) for f in with_tables}
    sources["count_nucleotides"] = assemble(tool=count_nucleotides)
    sources["find_max_nucleotide"] = assemble(preamble=[BUILTINS_IMPORT], tool=find_max_nucleotide)
    return sources
