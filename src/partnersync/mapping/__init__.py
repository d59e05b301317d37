"""The canonical model and the machinery that maps platform JSON onto it and back."""
