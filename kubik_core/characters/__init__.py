"""Character presets: the LoRAs, words, prompts and reference pictures of one character, kept in
a registry file that the Kubik Character node and `kubik characters` share."""
from .examples import EXAMPLES, example
from .model import Character, CharacterError, CharacterLora, check_name, check_reference, check_threshold
from .pictures import EXAMPLE_PICTURES_DIR, PictureError, reference_files
from .registry import (REGISTRY_FILE_NAME, Registry, RegistryError, editing, load_registry, put,
                       record_threshold, registry_path)

__all__ = ["EXAMPLES", "EXAMPLE_PICTURES_DIR", "REGISTRY_FILE_NAME", "Character", "CharacterError",
           "CharacterLora", "PictureError", "Registry", "RegistryError", "check_name", "check_reference",
           "check_threshold", "editing", "example", "load_registry", "put", "record_threshold",
           "reference_files", "registry_path"]
