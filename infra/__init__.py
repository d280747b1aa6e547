"""Everything around the logic: settings, embedded broker, topics as code, simulator."""
