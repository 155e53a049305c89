"""Pure address management: pool choice, subnet validation, address picking."""
