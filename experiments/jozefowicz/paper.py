"""The published numbers of Jozefowicz, Zaremba & Sutskever (2015), *An Empirical
Exploration of Recurrent Network Architectures* (ICML 2015), keyed by our
architecture names (`rnn` is the paper's Tanh RNN) and our task names.

Provenance: the paper's own text is not reachable from these machines. The
figures are copied from a public study note, "Jozefowicz, Zaremba & Sutskever
(2015), explained from scratch", which quotes the paper section by section and
gives the table rounded to 3 significant figures; they agree with what other
public summaries report. Treat them as the paper's numbers to 3 significant figures
(a secondary source, rounded), and say so wherever they are shown.

* `TABLE2[task][arch]`: the paper's results table, columns Arith. (`arithmetic`)
  and XML (`xml`), next-step accuracies (higher is better), directly comparable
  in kind with our accuracies on the same tasks.
* `PTB_TABLE2[arch]`: that table's PTB column, values near 0.09. What unit it
  carries is not established by the sources, and our word task is Shakespeare,
  not Penn Treebank: a reference only, never a target.
* `PTB_DROPOUT_PERPLEXITY[arch]`: PTB with dropout, 20M parameters, test
  perplexity (lower is better); LSTM-i, MUT1 and MUT2 are not in the sources.
  Also PTB, so again not comparable with our word task.

The paper's music NLL table is not in the sources: music has no paper figure.
"""

from __future__ import annotations

SOURCE = ("Table 2 of Jozefowicz et al. 2015, via a secondary source, "
          "rounded to 3 significant figures")
NAMES = {"rnn": "Tanh", "lstm": "LSTM", "lstm-i": "LSTM-i", "lstm-f": "LSTM-f",
         "lstm-o": "LSTM-o", "lstm-b": "LSTM-b", "gru": "GRU", "mut1": "MUT1",
         "mut2": "MUT2", "mut3": "MUT3"}  # ours -> the paper's

TABLE2: dict[str, dict[str, float]] = {
    "arithmetic": {"rnn": 0.295, "lstm": 0.892, "lstm-f": 0.293, "lstm-i": 0.751,
                   "lstm-o": 0.867, "lstm-b": 0.902, "gru": 0.896, "mut1": 0.921,
                   "mut2": 0.897, "mut3": 0.907},
    "xml": {"rnn": 0.321, "lstm": 0.425, "lstm-f": 0.234, "lstm-i": 0.414,
            "lstm-o": 0.421, "lstm-b": 0.444, "gru": 0.460, "mut1": 0.475,
            "mut2": 0.473, "mut3": 0.465},
}
PTB_TABLE2: dict[str, float] = {
    "rnn": 0.0878, "lstm": 0.0891, "lstm-f": 0.0881, "lstm-i": 0.0866, "lstm-o": 0.0893,
    "lstm-b": 0.0895, "gru": 0.0907, "mut1": 0.0897, "mut2": 0.0904, "mut3": 0.0916,
}
PTB_DROPOUT_PERPLEXITY: dict[str, float] = {
    "lstm-b": 79.8, "lstm": 81.4, "lstm-o": 82.3, "mut3": 89.5, "gru": 91.7, "rnn": 97.7,
    "lstm-f": 100.8,
}
REFERENCE_TASK = "words"  # the column beside which the PTB figures are shown as references


def comparable(task: str, arch: str) -> float | None:
    """The paper's value for the same task and metric as ours, or None."""
    return TABLE2.get(task, {}).get(arch)


def reference(task: str, arch: str) -> dict[str, float | None] | None:
    """The paper's PTB figures for our word task, which are not comparable with
    it (another corpus; the Table 2 column's unit is not established): None for
    the other tasks."""
    if task != REFERENCE_TASK:
        return None
    return {"ptb_table2": PTB_TABLE2.get(arch),
            "ptb_dropout_perplexity": PTB_DROPOUT_PERPLEXITY.get(arch)}
