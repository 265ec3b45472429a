"""Object stores (file, s3, gs) behind one small interface; see ``base.ObjectStore``."""
