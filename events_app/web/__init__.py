"""The HTTP edge: controllers per audience, one error mapper, presenters shared by them."""
