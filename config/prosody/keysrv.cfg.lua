-- keysrv: configuration snippet for Prosody 0.12 (needs prosody-modules for mod_privilege)
--
-- Paste this at the end of /etc/prosody/prosody.cfg.lua (or save it as
-- /etc/prosody/conf.d/keysrv.cfg.lua), then:
--   * replace example.com, keys.example.com and conference.example.com with
--     your own domain, key service and MUC service;
--   * replace CHANGE-ME-component-secret with a long random secret, the same
--     one keysrv is configured with (for example: openssl rand -hex 32);
--   * if you already have a VirtualHost or MUC Component for these names, merge
--     the settings below into the existing blocks instead of adding new ones.
--
-- The component port (component_ports, default 5347) must be reachable by
-- keysrv only: keep component_interfaces = { "127.0.0.1" } unless keysrv runs
-- on another machine.

VirtualHost "example.com"
	-- Added to the global modules_enabled for this host. mod_privilege
	-- (XEP-0356) lets keysrv read users' rosters to check who may read the
	-- keys of a one-to-one chat. It must be enabled here AND in the keysrv
	-- Component block below.
	modules_enabled = { "privilege" }
	privileged_entities = {
		["keys.example.com"] = { roster = "get" };
	}

-- The key service itself (XEP-0114 external component).
Component "keys.example.com"
	component_secret = "CHANGE-ME-component-secret"
	modules_enabled = { "privilege" }

-- Group chats. Listing keys.example.com in admins makes the key service an
-- owner of every room, so it can read the member lists (muc#admin) without
-- joining.
Component "conference.example.com" "muc"
	admins = { "keys.example.com" }
	-- Room history (XEP-0313) for members: a new device reads a room's
	-- past messages from the archive and fetches their keys by id.
	modules_enabled = { "muc_mam" }
	-- Defaults for new rooms that suit encrypted group chats: rooms that
	-- outlive their last occupant, open to members only, showing occupants'
	-- real JIDs. Room owners can still change these per room.
	muc_room_default_persistent = true
	muc_room_default_members_only = true
	muc_room_default_public_jids = true
