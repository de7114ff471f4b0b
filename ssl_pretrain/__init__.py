"""ssl_pretrain: self-supervised pretraining of image encoders with pretext tasks built on the device."""

__version__ = "0.1.0"
