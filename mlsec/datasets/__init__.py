"""Datasets read in bounded chunks: static risks, poisoning signals without a model, drift against a reference."""

# the column names a label is found under when none is named (case-insensitive): the dataset scanner's and
# the evaluations'
LABEL_NAMES = ("label", "labels", "target", "y", "class")
