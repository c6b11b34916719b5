"""The error types that explain a user's mistake (bad input, missing file, wrong params).

The CLI prints these as one message and exits 2 instead of showing a traceback; anything else
is a bug and keeps its traceback.
"""
from rsmoe.data.dota import LabelFormatError
from rsmoe.data.images import ImageReadError
from rsmoe.data.loaders import AnnotationError
from rsmoe.params import ParamsError
from rsmoe.stages import StageError

USER_ERRORS: tuple[type[BaseException], ...] = (
    ParamsError, StageError, AnnotationError, ImageReadError, LabelFormatError, FileNotFoundError,
)
