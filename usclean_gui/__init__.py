"""usclean_gui package."""
