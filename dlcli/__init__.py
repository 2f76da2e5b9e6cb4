"""dlcli: the landmark models of deep learning, trained and run from YAML recipes (`dl`)."""

__version__ = "0.1.0"
