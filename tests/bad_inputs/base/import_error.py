import not_a_module_anywhere  # noqa: F401


def build_model(hp):
    return None
