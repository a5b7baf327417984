"""Remote troubleshooting sessions (ADR 0074): opened by an operator, joined by the device."""
