"""Video decoding, face landmarks and mouth-ROI cropping."""
