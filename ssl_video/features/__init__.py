"""Clip features of frozen encoders, and the files that hold them.

``protocol``   ClipProtocol: which clips a video gives (count, frames, fps, resize, crop, mean/std)
``extraction`` the one loop: loader -> encoder -> CPU, every bad file recorded (``run_batches``)
``dataset``    features of every video of a dataset (uniform clips), cached (``extract_features``)
``cache``      the dataset feature cache: ``FeatureTable`` and its ``.npz`` + ``.clips.npy`` entries
``videos``     long videos to extract from: listing, names, shards
``sliding``    sliding-window clip features of long videos into h5 / npy stores (``ssl-video extract``)
``files``      the h5 / npy stores and their reader (``read_features``)
``labels``     the labels CSV of feature files (``read_labels_csv``)
``gvf``        global video features of TSP (``compute_gvf``, ``read_gvf``)

Importing this package loads nothing heavy.
"""
