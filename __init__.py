"""avfr: a low-bandwidth video-call codec built on Audio-Visual Face Reenactment (AVFR-GAN).

Subpackages: ``avfr.proto`` (wire format), ``avfr.codec`` (data, networks, runtime),
``avfr.sender`` / ``avfr.receiver`` (call peers), ``avfr.cli`` (the ``avfr-codec`` command).
Importing ``avfr`` does nothing but define ``__version__``.
"""

__version__ = "0.1.0"
