"""Built-in plugins, grouped by kind. Installed as ``reidkit.plugins``; each kind's
package is one entry point in the ``reidkit`` group, exactly like a third-party plugin."""
