"""The list of algorithms the provider offers (one module each)."""


def all_algorithms():
    """Return one instance of every Wetland U-Net algorithm."""
    from .align_pair import AlignPairAlgorithm
    from .clean_invalid import CleanInvalidAlgorithm

    algorithms = [AlignPairAlgorithm(), CleanInvalidAlgorithm()]
    for module, name in (("train", "TrainAlgorithm"), ("predict", "PredictAlgorithm"),
                         ("evaluate", "EvaluateAlgorithm"),
                         ("style_classified", "StyleClassifiedAlgorithm")):
        try:
            mod = __import__(f"{__package__}.{module}", fromlist=[name])
        except ImportError:
            continue
        algorithms.append(getattr(mod, name)())
    return algorithms
