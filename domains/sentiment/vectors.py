"""Word vectors from a local file in the common text format, to initialise embeddings (optional).

fastText `.vec`: a header line `<count> <dimension>`, then `word v1 ... vd` per line; GloVe `.txt`:
the same lines without the header. Only the words asked for are kept, so a large file costs one pass
and little memory. Nothing is downloaded: the file is named in params.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from domains.common.errors import DataError


def read_word_vectors(path: Path, words: set[str], dim: int) -> dict[str, np.ndarray]:
    """The vectors of `words` found in the file; one line naming the problem for a file that is not vectors of `dim`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"train.word_vectors: {path} not found")
    found: dict[str, np.ndarray] = {}
    with path.open("r", encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, start=1):
            fields = line.rstrip("\n").rstrip(" ").split(" ")
            header = number == 1 and len(fields) == 2 and all(f.isdigit() for f in fields)  # .vec: "<count> <dim>"
            if header or number == 1:  # the file's dimension, from the header or the first vector
                file_dim = int(fields[1]) if header else len(fields) - 1
                if file_dim != dim:
                    raise DataError(
                        f"train.word_vectors: {path} holds {file_dim}-dimensional vectors; "
                        f"set train.fasttext_dim: {file_dim}"
                    )
                if header:
                    continue
            if len(fields) < dim + 1:
                raise DataError(
                    f"train.word_vectors: {path} line {number} has {len(fields) - 1} values, expected {dim}"
                )
            word = " ".join(fields[:-dim])  # a word may hold spaces (GloVe 840B): the vector is the last `dim` fields
            if word in words:
                try:
                    found[word] = np.asarray(fields[-dim:], dtype=np.float32)
                except ValueError:
                    raise DataError(f"train.word_vectors: {path} line {number}: values are not numbers") from None
    return found
