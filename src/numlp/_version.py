"""numlp's version, in a module of its own so that any floor can read it without importing the
package's top (which imports everything)."""

__version__ = "0.1.0"
