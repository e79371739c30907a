"""Errors a user can fix (a bad data file, a bad checkpoint): each message says what is wrong and what
to do. Kept apart, with no heavy imports, so that the command line can catch them cheaply."""


class DataError(ValueError):
    """A data file is missing, empty, unreadable or holds a bad row; the message names the file (and row)."""


class CheckpointError(OSError):
    """A checkpoint folder that is missing, unreadable or not a BERT-family model."""


class StaleStageError(ValueError):
    """A finished training stage's folder was trained from other data, settings or models than asked now."""


class BudgetError(ValueError):
    """No model of a sweep is within the accuracy budget asked for (the message names the best), or the
    budget makes no sense."""
