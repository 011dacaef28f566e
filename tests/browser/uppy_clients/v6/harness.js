// @uppy/aws-s3 6.x as its users configure it: `companionEndpoint` only. It sends no custom
// headers, so the page's session cookie (same origin) is its only credential.
import AwsS3 from '@uppy/aws-s3'
import awsS3Package from '@uppy/aws-s3/package.json'
import Uppy from '@uppy/core'
import corePackage from '@uppy/core/package.json'
import { installHarness } from '../harness-common.js'

installHarness({
  generation: 6,
  versions: { core: corePackage.version, awsS3: awsS3Package.version },
  Uppy,
  AwsS3,
  pluginOptions: ({ endpoint }) => ({ companionEndpoint: endpoint }),
})
