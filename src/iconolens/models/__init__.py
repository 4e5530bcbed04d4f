"""Classifiers by transfer learning and everything around them.

``backbones`` (registry, ImageNet weight files, He init), ``checkpoint`` (save/load), ``transforms``
(image -> tensor), ``labelled_images`` (a split as tensors, class-list checks), ``augmentation``
(offline, to N per class), ``fitting`` (epoch loop, early stopping, resume), ``features`` (cached
off-the-shelf features), ``sklearn_heads`` (linear SVM, random forest), ``training`` (the three modes),
``metrics`` (the papers' classification metrics) and ``bow`` (SIFT bag-of-words + RBF SVM baseline).
"""
