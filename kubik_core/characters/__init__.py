"""Character presets: the LoRAs, words, prompts and reference pictures of one character, kept in
a registry file that the Kubik Character node and `kubik characters` share."""
from .examples import EXAMPLES, example
from .model import Character, CharacterError, CharacterLora, check_name, check_reference, check_threshold
from .registry import (REGISTRY_FILE_NAME, Registry, RegistryError, editing, load_registry, put,
                       record_threshold, registry_path)

__all__ = ["EXAMPLES", "REGISTRY_FILE_NAME", "Character", "CharacterError", "CharacterLora", "Registry",
           "RegistryError", "check_name", "check_reference", "check_threshold", "editing", "example",
           "load_registry", "put", "record_threshold", "registry_path"]
