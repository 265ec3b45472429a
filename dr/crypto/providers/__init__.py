"""Key providers: wrap and unwrap the repository master key (envelope encryption)."""
